// Producer and process() worker child processes (support/operated.js) for the suites that
// operate a store from outside: the `ringbus` command and the dashboard.
import { fork, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import type { EventBusOptions } from '../../index'
import { until } from './adapter'

type Msg = { h?: [string, number, number]; done?: boolean; dropped?: number; started?: boolean; closed?: boolean; error?: string }

const children: Child[] = []
// A test that fails part-way leaves its children running: stop them with the file.
afterAll(() => {
  for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL')
})

export class Child {
  proc: ChildProcess
  handled: Array<{ id: string; i: number; deliveries: number }> = []
  messages: Msg[] = []
  constructor(cfg: object) {
    this.proc = fork(path.join(__dirname, 'operated.js'), [JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(this)
    this.proc.on('message', (m: Msg) => {
      if (m.error) throw new Error(`child: ${m.error}`)
      if (m.h) this.handled.push({ id: m.h[0], i: m.h[1], deliveries: m.h[2] })
      this.messages.push(m)
    })
  }
  async waitFor(pred: (m: Msg) => boolean, ms = 30_000) {
    await until(() => this.messages.some(pred), ms)
  }
  async close() {
    if (this.proc.exitCode !== null) return
    const exited = new Promise((r) => this.proc.once('exit', r))
    this.proc.send('close')
    await exited
  }
}

export async function produce(options: EventBusOptions, from: number, to: number, more: object = {}) {
  const p = new Child({ mode: 'produce', options, from, to, ...more })
  await p.waitFor((m) => m.done === true)
  expect(p.messages.find((m) => m.done)!.dropped).toBe(0)
  await new Promise((r) => (p.proc.exitCode !== null ? r(null) : p.proc.once('exit', r)))
}

