// The dashboard in a real browser: Debian's chromium driven by puppeteer-core, against a
// live JetStream and a live Redis group fed by child processes (support/operated.js).
// The overview's lag is bus.group()'s; a filter in Messages shows exactly the matching
// events; redriving two selected letters by clicking moves exactly those two (deadLetters
// and the worker's handler say so); read-only refuses the POST with 403 and shows no write
// buttons; a wrong password gets 401; every request the page makes stays on 127.0.0.1.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import type * as Ringbus from '../index'
import { REDIS, storesForFile, trackBuses, until } from './support/adapter'
import { uniqueName } from './support/servers'
import { Child, produce } from './support/children'

const { createDashboard } = require('../main.js') as typeof Ringbus

jest.setTimeout(180_000)

const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium'
// Screenshots for people to look at (docs/dashboard-overview.png is a copy of one).
const SHOTS = path.join(__dirname, '..', 'artifacts', 'dashboard')
// First load of the page: everything it fetches, measured below.
const PAGE_BUDGET = 250 * 1024

const create = trackBuses()
const adapterFor = storesForFile()
let browser: Browser
const servers: http.Server[] = []

beforeAll(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium package (.ci/run does), or set CHROMIUM_BIN`)
  fs.mkdirSync(SHOTS, { recursive: true })
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in CI: Chromium's sandbox needs an unprivileged user.
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-first-run', '--disable-gpu'],
  })
})

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections()
    await new Promise((r) => s.close(r))
  }
  await browser?.close()
})

async function serve(options: Ringbus.DashboardOptions): Promise<string> {
  const server = http.createServer(createDashboard(options))
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/`
}

/** A page that records every request it makes and every byte it receives. */
async function open(url: string) {
  const page = await browser.newPage()
  await page.setViewport({ width: 1280, height: 900 })
  const requests: string[] = []
  page.on('request', (r) => requests.push(r.url()))
  page.on('dialog', (d) => void d.accept())
  const response = await page.goto(url, { waitUntil: 'networkidle0' })
  // What the first load transferred, as the browser counts it (headers included).
  const weight = () =>
    page.evaluate(() =>
      [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')].reduce((n, e) => n + (e as PerformanceResourceTiming).transferSize, 0),
    )
  return { page, requests, weight, status: response?.status() }
}

const text = (page: Page, selector: string) => page.$eval(selector, (e) => (e.textContent ?? '').trim())

describe.each(['jetstream', 'redis'])('the dashboard on %s', (kind) => {
  it('shows lag, filters messages, redrives two selected letters, refuses writes when read-only', async () => {
    const name = uniqueName(`dash-${kind}`)
    const options = { shards: 2, adapter: adapterFor(kind, name) }
    const flag = path.join(os.tmpdir(), `${name}-poison`)
    fs.writeFileSync(flag, '1')
    // A worker in a child process; five poison events fail twice each and become letters.
    const worker = new Child({ mode: 'work', options, group: 'dash', member: 'w1', flag })
    await worker.waitFor((m) => m.started === true)
    await produce(options, 0, 300)
    await produce(options, 300, 305, { extraAll: { poison: true } })
    const bus = await create(options)
    await until(async () => (await bus.group('dash')).deadLetters === 5 && (await bus.group('dash')).lag === 0, 60_000)
    await worker.close()
    // Lag: events stored while the group has no member.
    await produce(options, 305, 345)
    await until(async () => (await bus.group('dash')).lag === 40)

    const url = await serve({ bus, title: name })
    const { page, requests, weight, status } = await open(url)
    expect(status).toBe(200)
    // Overview: the group's lag is bus.group()'s, and it is flagged as having no members.
    await page.waitForSelector('#groups tr[data-group="dash"]')
    expect(await text(page, '#groups tr[data-group="dash"] td[data-field="lag"]')).toBe((40).toLocaleString('en-US'))
    expect(await text(page, '#groups tr[data-group="dash"]')).toContain('no members')
    const loaded = await weight()
    expect(loaded).toBeGreaterThan(50_000) // uPlot alone is about 50 kB: the count is real
    expect(loaded).toBeLessThanOrEqual(PAGE_BUDGET)
    // The rate charts appear from the second refresh on.
    await page.waitForSelector('.charts .uplot', { timeout: 20_000 })
    await page.screenshot({ path: path.join(SHOTS, `overview-${kind}.png`), fullPage: true })

    // Group view: per shard owner and lag; the reset form is enabled (no members).
    await page.goto(`${url}#/group/dash`)
    await page.waitForFunction(() => document.querySelectorAll('main table tbody tr').length >= 2)
    await page.screenshot({ path: path.join(SHOTS, `group-${kind}.png`) })

    // Messages: a filter shows exactly the events poll gives for it. The view's first,
    // unfiltered read is held back until the filtered answer has drawn: a late answer to an
    // older request must not replace the newer one (it did, once, in CI).
    let release = () => {}
    const held = new Promise<void>((r) => (release = r))
    await page.setRequestInterception(true)
    page.on('request', (r) => {
      if (r.isInterceptResolutionHandled()) return
      const u = new URL(r.url())
      if (u.pathname.endsWith('/api/messages') && !u.searchParams.has('filter')) void held.then(() => r.continue())
      else void r.continue()
    })
    await page.goto(`${url}#/messages`)
    await page.waitForSelector('textarea[name="filter"]')
    await page.type('textarea[name="filter"]', '{"type":"refund"}')
    await page.click('#read')
    const expected = (await bus.poll({ limit: 50, filter: { type: 'refund' } })).events.map((e) => e.id)
    expect(expected.length).toBe(50)
    const drawn = (n: number) => document.querySelectorAll('#events .event').length === n && document.querySelector('.hint')?.textContent?.startsWith(`${n} events`)
    await page.waitForFunction(drawn, {}, expected.length)
    const shownIds = () => page.$$eval('#events .event', (cards) => cards.map((c) => c.getAttribute('data-id')))
    expect(await shownIds()).toEqual(expected)
    // Now the stale answer arrives; the page must keep the filtered events.
    const stale = page.waitForResponse((r) => r.url().includes('/api/messages') && !new URL(r.url()).searchParams.has('filter'))
    release()
    await stale
    await page.evaluate(() => new Promise((r) => setTimeout(r, 100)))
    const shown = await shownIds()
    expect(shown).toEqual(expected)
    await page.screenshot({ path: path.join(SHOTS, `messages-${kind}.png`) })

    // Dead letters: select two, redrive them by clicking (dry run, confirm, write).
    const before = (await bus.deadLetters('dash')).events
    expect(before.length).toBe(5)
    await page.goto(`${url}#/letters/dash`)
    await page.waitForFunction(() => document.querySelectorAll('#letters .event').length === 5)
    const picked = await page.$$eval('#letters input.pick', (boxes) => boxes.slice(0, 2).map((b) => (b as HTMLInputElement).value))
    for (const id of picked) await page.click(`#letters input.pick[value="${id}"]`)
    await page.screenshot({ path: path.join(SHOTS, `letters-${kind}.png`) })
    await page.click('#redrive-selected')
    await page.waitForFunction(() => document.getElementById('outcome')?.textContent === 'Redrive: 2')
    const after = (await bus.deadLetters('dash')).events.map((l) => l.letterId)
    expect(after.sort()).toEqual(before.map((l) => l.letterId).filter((id) => !picked.includes(id)).sort())
    // The handler gets exactly those two events back (the poison flag is gone now).
    fs.unlinkSync(flag)
    const again = new Child({ mode: 'work', options, group: 'dash', member: 'w2', flag })
    const redriven = before.filter((l) => picked.includes(l.letterId)).map((l) => (l.json() as { i: number }).i)
    await until(() => redriven.every((i) => again.handled.some((h) => h.i === i)), 60_000)
    await until(() => again.handled.length === 40 + 2, 30_000)
    expect(again.handled.filter((h) => h.i >= 300 && h.i < 305).map((h) => h.i).sort()).toEqual(redriven.sort())
    await again.close()

    // Every request stayed on this server: no CDN, nothing else.
    expect(requests.length).toBeGreaterThan(0)
    for (const r of requests) expect(r.startsWith(url) || r.startsWith('data:') || r.startsWith('blob:')).toBe(true)
    const overview = await (await fetch(`${url}api/overview`)).text()
    for (const secret of ['nats://', 'redis://', ':4222', ':6379']) expect(overview).not.toContain(secret)
    await page.close()

    // Read-only: the same POST is refused with 403 and the page offers no write buttons.
    const ro = await serve({ bus, readOnly: true })
    const csrf = /name="ringbus-csrf" content="([^"]+)"/.exec(await (await fetch(ro)).text())![1]
    const post = await fetch(`${ro}api/letters/redeliver`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Ringbus-Csrf': csrf },
      body: JSON.stringify({ group: 'dash', letterIds: after.slice(0, 1) }),
    })
    expect(post.status).toBe(403)
    expect((await bus.deadLetters('dash')).events.length).toBe(3)
    const view = await open(`${ro}#/letters/dash`)
    await view.page.waitForFunction(() => document.querySelectorAll('#letters .event').length === 3)
    expect(await view.page.$$('#redrive-selected, #redrive-all, #purge-selected, #purge-all, input.pick')).toEqual([])
    expect(await text(view.page, '#mode')).toBe('read-only')
    await view.page.close()
  })
})

describe('the dashboard', () => {
  it('asks for a password (401 when wrong), checks CSRF and origin on writes, and lets authorize refuse', async () => {
    const bus = await create({ adapter: { type: 'memory' } })
    const url = await serve({ bus, user: 'ops', password: 'correct horse' })
    const wrong = await browser.newPage()
    await wrong.authenticate({ username: 'ops', password: 'wrong' })
    expect((await wrong.goto(url))?.status()).toBe(401)
    await wrong.close()
    const right = await browser.newPage()
    await right.authenticate({ username: 'ops', password: 'correct horse' })
    expect((await right.goto(url))?.status()).toBe(200)
    const html = await right.content()
    expect(html).not.toContain('correct horse')
    await right.close()

    const auth = { Authorization: `Basic ${Buffer.from('ops:correct horse').toString('base64')}` }
    const csrf = /name="ringbus-csrf" content="([^"]+)"/.exec(await (await fetch(url, { headers: auth })).text())![1]
    const write = (headers: Record<string, string>) =>
      fetch(`${url}api/letters/purge`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ group: 'g', all: true, dryRun: true }) })
    expect((await write({})).status).toBe(403)
    expect((await write({ 'X-Ringbus-Csrf': csrf, Origin: 'http://evil.example' })).status).toBe(403)
    const ok = await write({ 'X-Ringbus-Csrf': csrf })
    expect({ status: ok.status, body: await ok.json() }).toEqual({ status: 200, body: { count: 0, dryRun: true } })

    const denied = await serve({ bus, authorize: (_req, action) => action === 'read' })
    const page = await (await fetch(denied)).text()
    expect(page).toContain('name="ringbus-writes" content=""')
    const token = /name="ringbus-csrf" content="([^"]+)"/.exec(page)![1]
    const refused = await fetch(`${denied}api/group/reset`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Ringbus-Csrf': token }, body: JSON.stringify({ group: 'g', to: 'earliest', dryRun: true }) })
    expect(refused.status).toBe(403)
    expect(() => createDashboard({ bus, user: 'only-user' } as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CONFIG' }))
  })
})

describe('the dashboard under Express', () => {
  it('mounts under a path: the bare path redirects to it with a slash, and page, assets and API answer there', async () => {
    const express = require('express') as typeof import('express')
    const bus = await create({ adapter: { type: 'memory' } })
    const app = express()
    app.use('/ops/', createDashboard({ bus, title: 'mounted' }))
    const server = http.createServer(app)
    servers.push(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    const bare = await fetch(`${base}/ops`, { redirect: 'manual' })
    expect({ status: bare.status, location: bare.headers.get('location') }).toEqual({ status: 308, location: '/ops/' })
    const page = await fetch(`${base}/ops/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('assets/app.js')
    expect((await fetch(`${base}/ops/assets/uplot.js`)).status).toBe(200)
    const overview = await (await fetch(`${base}/ops/api/overview`)).json()
    expect(overview).toMatchObject({ title: 'mounted', groups: [], stored: 0 })
  })
})

describe('ringbus dashboard (the command)', () => {
  const BIN = path.join(__dirname, '..', 'bin', 'ringbus.js')
  const run = (args: string[]) => spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } })
  const exit = (p: ReturnType<typeof run>) => new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.once('exit', (code) => r(code))))

  it('serves the page of a store until SIGTERM, and refuses another host without a user', async () => {
    const prefix = uniqueName('dashcli')
    const p = run(['--url', `${REDIS}?prefix=${prefix}`, '--json', 'dashboard', '--port', '0', '--read-only'])
    let out = ''
    p.stdout!.on('data', (d) => (out += d))
    await until(() => out.includes('\n'), 30_000)
    const { url, readOnly } = JSON.parse(out.split('\n')[0])
    expect(readOnly).toBe(true)
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
    const page = await (await fetch(url)).text()
    expect(page).toContain('name="ringbus-read-only" content="true"')
    expect(page).not.toContain('redis://')
    p.kill('SIGTERM')
    expect(await exit(p)).toBe(0)

    const open = run(['--url', `${REDIS}?prefix=${prefix}`, 'dashboard', '--host', '0.0.0.0', '--port', '0'])
    let err = ''
    open.stderr!.on('data', (d) => (err += d))
    expect(await exit(open)).toBe(2)
    expect(err).toContain('ERR_INVALID_CONFIG')
    expect(err).toContain('--user')
  })
})
