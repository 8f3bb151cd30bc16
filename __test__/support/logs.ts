// The suite's log capture, installed for every file by jest.config.js (setupFilesAfterEnv).
// ringbus's records go to a setLogger sink instead of stderr. A file that provokes
// warnings or errors on purpose (outages, killed servers) names them with `expectLogs`
// and asserts on them with `logged`; any other record is written to stderr after the test
// with its name, so a clean run prints only Jest's summary and a real problem still shows.
import { setLogger, type LogRecord } from '../../index'

const records: LogRecord[] = []
const expected: RegExp[] = []
let seen = 0

const sink = (record: LogRecord) => {
  total++
  records.push(record)
  // Bounded: a test that floods the log keeps the last 20,000 records.
  if (records.length > 20_000) {
    const cut = records.length - 20_000
    records.splice(0, cut)
    seen = Math.max(0, seen - cut)
  }
}

const line = (r: LogRecord) => `ringbus ${r.level.toUpperCase()} ${r.target}: ${r.message} ${JSON.stringify(r.fields)}`

/** Writes the records since the last call that no `expectLogs` pattern covers. */
function reportUnexpected(where: string) {
  const fresh = records.slice(seen)
  seen = records.length
  const stray = fresh.filter((r) => (r.level === 'warn' || r.level === 'error') && !expected.some((re) => re.test(r.message)))
  if (stray.length) process.stderr.write(`\n${stray.length} unexpected ringbus log record(s) in ${where}:\n${stray.map(line).join('\n')}\n`)
}

/** This file provokes records whose message matches one of `patterns`: they are not shown. */
export function expectLogs(...patterns: RegExp[]) {
  expected.push(...patterns)
}

let total = 0

/** A point in the log: `logged(…, since)` then sees only records after it. */
export function logMark(): number {
  return total
}

/** The records whose message matches `pattern` (at `level`, when given), after `since`. */
export function logged(pattern: RegExp, level?: LogRecord['level'], since = 0): LogRecord[] {
  const skip = Math.max(0, since - (total - records.length))
  return records.slice(skip).filter((r) => pattern.test(r.message) && (level === undefined || r.level === level))
}

/** Restores the capture after a test that installed its own sink. */
export function captureLogs() {
  setLogger(sink)
}

beforeAll(() => captureLogs())
afterEach(() => reportUnexpected(`"${expect.getState().currentTestName}"`))
afterAll(() => {
  reportUnexpected('the file teardown')
  setLogger(null)
})
