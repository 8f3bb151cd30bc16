// Numbers a test measures but does not judge (repeats after a kill, RSS during an outage):
// appended to artifacts/test-measurements.log with the time and the file, instead of
// Jest's output, which stays for failures.
import fs from 'node:fs'
import path from 'node:path'

const FILE = path.join(__dirname, '..', '..', 'artifacts', 'test-measurements.log')

export function measured(line: string) {
  fs.mkdirSync(path.dirname(FILE), { recursive: true })
  const test = expect.getState().currentTestName ?? path.basename(expect.getState().testPath ?? '')
  fs.appendFileSync(FILE, `${new Date().toISOString()} ${test}: ${line}\n`)
}
