const http = require('node:http')
const puppeteer = require('puppeteer-core')
const Redis = require('ioredis')
const { EventBus, createDashboard } = require('./main.js')
;(async () => {
  const adapter = { type: 'redis', url: 'redis://127.0.0.1:6391', keyPrefix: 'load' }
  const bus = await EventBus.create({ shards: 4, adapter })
  for (let i = 0; i < 1000; i++) bus.ingest({ i }, { key: 'k' + (i % 10) })
  await bus.flush()
  const c = await bus.consumer({ group: 'g1' }); for (let i = 0; i < 10; i++) { const s = await c.next(); c.ack(s.value) } ; await c.close()
  const c2 = await bus.consumer({ group: 'g2' }); await c2.close()
  const server = http.createServer(createDashboard({ bus })).listen(0, '127.0.0.1')
  await new Promise((r) => server.once('listening', r))
  const url = `http://127.0.0.1:${server.address().port}/`
  const r = new Redis('redis://127.0.0.1:6391')
  const total = async () => { const info = await r.info('stats'); return Number(/total_commands_processed:(\d+)/.exec(info)[1]) }
  await new Promise((res) => setTimeout(res, 3000))
  const idle0 = await total(); await new Promise((res) => setTimeout(res, 30000)); const idle = (await total()) - idle0 - 1
  const b = await puppeteer.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] })
  const page = await b.newPage()
  let bytes = 0, reqs = 0
  page.on('response', async (x) => { try { bytes += (await x.buffer()).length } catch {} })
  page.on('request', () => reqs++)
  await page.goto(url, { waitUntil: 'networkidle0' })
  const firstLoad = bytes; const firstReqs = reqs
  const t0 = await total(); reqs = 0
  await new Promise((res) => setTimeout(res, 30000))
  const open = (await total()) - t0 - 1
  console.log(JSON.stringify({ firstLoadBytes: firstLoad, firstLoadRequests: firstReqs, pageRequestsIn30s: reqs, redisCommandsIn30sIdle: idle, redisCommandsIn30sWithPage: open }))
  await b.close(); server.close(); await bus.shutdown(); r.disconnect()
})()
