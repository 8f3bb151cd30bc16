// The `ringbus` command against a live JetStream and a live Redis, spawned as a user runs
// it, with a producer and a process() worker in child processes: the lag it reports is the
// one ioredis / nats.js count and consumer.stats() give; `check` exits 1 past a threshold
// and 0 once drained; `tail --from 5m --filter` prints exactly the matching events as
// NDJSON; `group reset --to <time>` replays exactly what was stored after it (a dry run
// changes no commit record in the store); `dlq redrive --filter` moves exactly the matching
// letters and the worker handles them. Secrets never reach any output; bad input exits 2
// with a code and writes nothing.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Redis from 'ioredis'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import type { EventBusOptions } from '../index'
import { NATS, REDIS, lagCountedIndependently, sleep, storesForFile, trackBuses, until } from './support/adapter'
import { uniqueName } from './support/servers'
import { Child, produce } from './support/children'

jest.setTimeout(180_000)

const create = trackBuses()
const adapterFor = storesForFile()
const BIN = path.join(__dirname, '..', 'bin', 'ringbus.js')

type Run = { code: number; stdout: string; stderr: string }

/** Runs the command as a user would; never throws. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0
      resolve({ code, stdout, stderr })
    })
  })
}

const lines = (r: Run) =>
  r.stdout
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>)

function urlFor(kind: string, name: string, secret = ''): string {
  const auth = secret ? `ringbus:${secret}@` : ''
  return kind === 'jetstream' ? `nats://${auth}${NATS.replace(/^nats:\/\//, '')}/${name}` : `redis://${auth}${REDIS.replace(/^redis:\/\//, '')}?prefix=${name}`
}

/** Every stored event as an independent client reads it: [id, body]. */
async function storedIndependently(kind: string, name: string, shards: number): Promise<Array<[string, { i: number; type: string; region?: string }]>> {
  const out: Array<[string, { i: number; type: string; region?: string }]> = []
  if (kind === 'redis') {
    const r = new Redis(REDIS)
    for (let s = 0; s < shards; s++) {
      for (const [id, fields] of await r.xrange(`{${name}:${s}}`, '-', '+')) {
        // The payload is the value of the field `d` (the adapter's record layout).
        const at = fields.indexOf('d')
        out.push([id, JSON.parse(fields[at + 1])])
      }
    }
    await r.quit()
    return out
  }
  const nc = await connect({ servers: NATS })
  const jsm = await jetstreamManager(nc)
  const info = await jsm.streams.info(name)
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(name, { seq })
    if (m) out.push([String(seq), JSON.parse(new TextDecoder().decode(m.data))])
  }
  await nc.close()
  return out
}

/** The raw commit records of `group`, read from the store with an independent client. */
async function commitRecords(kind: string, name: string, group: string, shards: number): Promise<Array<string | null>> {
  const out: Array<string | null> = []
  if (kind === 'redis') {
    const r = new Redis(REDIS)
    for (let s = 0; s < shards; s++) out.push(await r.get(`{${name}:g:${group}}:commit:${s}`))
    await r.quit()
    return out
  }
  // A KV entry is the last message on its subject in the bucket's stream.
  const nc = await connect({ servers: NATS })
  const jsm = await jetstreamManager(nc)
  for (let s = 0; s < shards; s++) {
    const m = await jsm.streams.getMessage(`KV_rbg_${name}`, { last_by_subj: `$KV.rbg_${name}.commit.${group}.${s}` }).catch(() => null)
    out.push(m ? new TextDecoder().decode(m.data) : null)
  }
  await nc.close()
  return out
}

describe.each(['jetstream', 'redis'])('%s: the ringbus command', (kind) => {
  const SHARDS = 3
  let name: string
  let options: EventBusOptions
  let url: string
  const env = () => ({ RINGBUS_URL: url })

  beforeAll(() => {
    name = uniqueName('cli')
    options = { shards: SHARDS, adapter: adapterFor(kind, name) }
    url = urlFor(kind, name)
  })

  it('reports the lag an independent count and consumer.stats() give; check follows it; tail filters; reset by time replays exactly', async () => {
    await produce(options, 0, 300)
    const w1 = new Child({ mode: 'work', options, group: 'billing', member: 'w1' })
    await until(() => w1.handled.length === 300, 60_000)
    await w1.close()
    await sleep(30)
    const t = new Date()
    await sleep(30)
    await produce(options, 300, 500)

    // Lag: the command, an in-process member's own count, an independent client.
    const bus = await create(options)
    const c = await bus.consumer({ group: 'billing', member: 'observer', leaseMs: 3000 })
    await until(() => c.stats().shards.length === SHARDS && c.stats().lag === 200, 20_000)
    const groups = await cli(['groups'], env())
    expect(groups.code).toBe(0)
    expect(lines(groups)).toEqual([expect.objectContaining({ group: 'billing', members: 1, lag: 200 })])
    const one = await cli(['group', 'billing', '--json'], env())
    const g = lines(one)[0] as { lag: number; members: Array<{ name: string }>; shards: Array<{ id: number; owner?: string; committed?: string }> }
    expect(g.lag).toBe(200)
    expect(g.members.map((m) => m.name)).toEqual(['observer'])
    expect(g.shards.every((s) => s.owner === 'observer')).toBe(true)
    expect(await lagCountedIndependently(kind, name, g.shards)).toBe(200)

    // A reset is refused while a member is live, naming it.
    const refused = await cli(['group', 'reset', 'billing', '--to', t.toISOString()], env())
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/ERR_INVALID_CONFIG: .*observer/)
    await c.close()

    const breach = await cli(['check', '--max-lag', '100', '--format', 'json'], env())
    expect(breach.code).toBe(1)
    expect(lines(breach)[0]).toMatchObject({ status: 'breach', groups: [{ group: 'billing', lag: 200 }] })
    const w2 = new Child({ mode: 'work', options, group: 'billing', member: 'w2' })
    await until(() => w2.handled.length === 200, 60_000)
    await w2.close()
    await until(async () => (await cli(['check', '--max-lag', '100'], env())).code === 0, 20_000)
    const ok = await cli(['check', '--max-lag', '100', '--max-dead', '0', '--format', 'nagios'], env())
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(/^RINGBUS OK - 1 group within limits \| 'billing_lag'=0;100/)
    const prom = await cli(['check', '--max-lag', '100', '--format', 'prometheus'], env())
    expect(prom.stdout).toContain('ringbus_check_group_lag{group="billing"} 0\n')
    expect(prom.stdout).toContain('ringbus_check_ok 1\n')

    // tail: exactly the refunds, as NDJSON that parses line by line.
    const stored = await storedIndependently(kind, name, SHARDS)
    expect(stored).toHaveLength(500)
    const tail = await cli(['tail', '--from', '5m', '--filter', '{"type":"refund"}', '--limit', '0'], env())
    expect(tail.code).toBe(0)
    const printed = lines(tail) as Array<{ id: string; json: { i: number; type: string } }>
    const refunds = stored.filter(([, b]) => b.type === 'refund')
    expect(printed.map((e) => e.id).sort()).toEqual(refunds.map(([id]) => id).sort())
    expect(printed.every((e) => e.json.type === 'refund')).toBe(true)

    // Reset by time: a dry run changes no commit record; the reset replays exactly what was stored after t.
    const before = await commitRecords(kind, name, 'billing', SHARDS)
    const dry = await cli(['group', 'reset', 'billing', '--to', t.toISOString(), '--dry-run'], env())
    expect(dry.code).toBe(0)
    const plan = lines(dry)[0] as { dryRun: boolean; shards: Array<{ lagAfter: number }> }
    expect(plan.dryRun).toBe(true)
    expect(plan.shards.reduce((n, s) => n + s.lagAfter, 0)).toBe(200)
    expect(await commitRecords(kind, name, 'billing', SHARDS)).toEqual(before)
    const reset = await cli(['group', 'reset', 'billing', '--to', t.toISOString()], env())
    expect(reset.code).toBe(0)
    expect(await commitRecords(kind, name, 'billing', SHARDS)).not.toEqual(before)
    const w3 = new Child({ mode: 'work', options, group: 'billing', member: 'w3' })
    await until(() => w3.handled.length >= 200, 60_000)
    await sleep(500)
    await w3.close()
    const after = stored.filter(([, b]) => b.i >= 300).map(([id]) => id)
    expect(w3.handled.map((h) => h.id).sort()).toEqual(after.sort())
  })

  it('dlq ls shows the dead letters; redrive --filter moves exactly the matching ones and they are handled', async () => {
    const flag = path.join(os.tmpdir(), `${name}-poison`)
    fs.writeFileSync(flag, '1')
    const w = new Child({ mode: 'work', options, group: 'letters', member: 'wl', flag })
    await w.waitFor((m) => m.started === true)
    await produce(options, 1000, 1006, { extraAll: { poison: true }, regions: ['eu', 'us'] })
    await until(async () => {
      const r = await cli(['group', 'letters'], env())
      return r.code === 0 && (lines(r)[0] as { deadLetters: number }).deadLetters === 6
    }, 60_000)
    const ls = await cli(['dlq', 'ls', 'letters'], env())
    const letters = lines(ls) as Array<{ letterId: string; id: string; reason: string; json: { i: number; region: string } }>
    expect(letters.map((l) => l.json.i).sort()).toEqual([1000, 1001, 1002, 1003, 1004, 1005])
    expect(letters.every((l) => l.reason.includes('poison'))).toBe(true)
    const eu = letters.filter((l) => l.json.region === 'eu')
    const show = await cli(['dlq', 'show', 'letters', eu[0].letterId], env())
    expect(lines(show)[0]).toMatchObject({ letterId: eu[0].letterId, id: eu[0].id })

    fs.unlinkSync(flag)
    const dry = await cli(['dlq', 'redrive', 'letters', '--filter', '{"region":"eu"}', '--dry-run'], env())
    expect(lines(dry)[0]).toEqual({ group: 'letters', action: 'redrive', dryRun: true, count: 3 })
    expect(lines(await cli(['dlq', 'ls', 'letters'], env()))).toHaveLength(6)
    const moved = await cli(['dlq', 'redrive', 'letters', '--filter', '{"region":"eu"}'], env())
    expect(lines(moved)[0]).toEqual({ group: 'letters', action: 'redrive', dryRun: false, count: 3 })
    // The group started at the earliest event: what the other test stored is handled too.
    const redriven = () => w.handled.filter((h) => h.i >= 1000)
    await until(() => redriven().length === 3, 30_000)
    await sleep(300)
    expect(redriven().map((h) => h.id).sort()).toEqual(eu.map((l) => l.id).sort())
    const left = lines(await cli(['dlq', 'ls', 'letters'], env())) as Array<{ json: { region: string } }>
    expect(left.map((l) => l.json.region)).toEqual(['us', 'us', 'us'])

    const refused = await cli(['dlq', 'purge', 'letters'], env())
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('--yes')
    expect(lines(await cli(['dlq', 'purge', 'letters', '--yes'], env()))[0]).toMatchObject({ action: 'purge', count: 3 })
    expect(lines(await cli(['dlq', 'ls', 'letters'], env()))).toEqual([])
    await w.close()
  })

  it('never prints a password or token: not in output, errors or --verbose', async () => {
    const marker = 'S3cretMarker-4711'
    const runs = [
      await cli(['--verbose', 'info'], { RINGBUS_URL: urlFor(kind, name, marker) }),
      await cli(['--verbose', 'groups', '--url', urlFor(kind, name, marker)]),
      await cli(['--verbose', 'info', '--url', urlFor(kind, 'no-such-stream-x', marker)]),
      await cli(['--verbose', 'group', 'nobody'], { RINGBUS_URL: urlFor(kind, name), RINGBUS_PASSWORD: marker }),
      await cli(['--verbose', 'tail', '--from', 'bogus-cursor'], { RINGBUS_URL: urlFor(kind, name, marker) }),
      await cli(['--verbose', 'info', '--url', `${urlFor(kind, name, marker)}&junk`]),
      await cli(['--verbose', 'info', '--url', `nats://u:${marker}@127.0.0.1:99999/x`]),
      await cli(['--verbose', 'info', '--url', `bogus://u:${marker}@host/x`]),
    ]
    for (const r of runs) {
      expect(`${r.stdout}${r.stderr}`).not.toContain(marker)
    }
    // Some of these fail (exit 2, coded), and say so without the secret.
    expect(runs.filter((r) => r.code === 2).every((r) => /ringbus: ERR_[A-Z_]+: /.test(r.stderr))).toBe(true)
    expect(runs[0].stderr).toContain('***')
  })
})

describe('the ringbus command refuses bad input with a code and exit 2, writing nothing', () => {
  it.each([
    ['a malformed URL', ['info', '--url', 'http://127.0.0.1:6379'], 'ERR_INVALID_CONFIG'],
    ['a NATS URL without a stream', ['info', '--url', 'nats://127.0.0.1:4222'], 'ERR_INVALID_CONFIG'],
    ['a bad port', ['info', '--url', 'redis://127.0.0.1:70000?prefix=x'], 'ERR_INVALID_CONFIG'],
    ['an unknown URL parameter', ['info', '--url', 'redis://127.0.0.1:6379?prefx=x'], 'ERR_INVALID_CONFIG'],
    ['a filter that is not JSON', ['tail', '--filter', '{type:order}'], 'ERR_INVALID_FILTER'],
    ['a filter with an unknown operator', ['tail', '--filter', '{"n":{"$near":1}}'], 'ERR_INVALID_FILTER'],
    ['a bad time', ['tail', '--from', '2026-13-45T99:00:00Z'], 'ERR_INVALID_CONFIG'],
    ['a bad duration', ['check', '--max-lag-age', '5 minutes'], 'ERR_INVALID_CONFIG'],
    ['a bad cursor', ['tail', '--from', 'not-a-cursor'], 'ERR_INVALID_CURSOR'],
    ['a reset to a bad cursor', ['group', 'reset', 'g', '--to', 'rb1.garbage'], 'ERR_INVALID_CURSOR'],
    ['a negative limit', ['dlq', 'ls', 'g', '--limit', '-3'], 'ERR_INVALID_CONFIG'],
    ['check without a threshold', ['check'], 'ERR_INVALID_CONFIG'],
    ['a bad group name', ['group', 'no spaces allowed'], 'ERR_INVALID_CONFIG'],
  ])('%s', async (_what, args, code) => {
    const prefix = uniqueName('clibad')
    const r = await cli(args, { RINGBUS_URL: `${REDIS}?prefix=${prefix}` })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(new RegExp(`^ringbus: ${code}: .+`))
    expect(r.stdout).toBe('')
    const redis = new Redis(REDIS)
    expect(await redis.keys(`*${prefix}*`)).toEqual([])
    await redis.quit()
  })

  it('prints help with examples and exits 0', async () => {
    for (const args of [['--help'], ['tail', '--help'], ['check', '--help'], ['dlq', 'redrive', '--help']]) {
      const r = await cli(args)
      expect(r.code).toBe(0)
      expect(r.stdout).toMatch(/Usage: ringbus/)
    }
    expect((await cli(['tail', '--help'])).stdout).toContain('Examples:')
  })
})
