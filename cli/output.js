'use strict'
// Where results go: NDJSON (one record per line) when stdout is not a terminal or with
// --json, aligned tables on a terminal. No pager. Every line written, to stdout or stderr,
// passes through `redact`, so a secret can never be printed.

class Output {
  constructor({ json, verbose, secrets = [], stdout = process.stdout, stderr = process.stderr }) {
    this.json = json ?? !stdout.isTTY
    this.verboseOn = Boolean(verbose)
    this.stdout = stdout
    this.stderr = stderr
    this.secrets = []
    for (const s of secrets) this.addSecret(s)
  }

  addSecret(s) {
    if (!s) return
    for (const form of new Set([s, encodeURIComponent(s), JSON.stringify(s).slice(1, -1)])) {
      if (form.length > 0) this.secrets.push(form)
    }
    // Longest first, so that a secret containing another is hidden whole.
    this.secrets.sort((a, b) => b.length - a.length)
  }

  redact(text) {
    let out = String(text)
    for (const s of this.secrets) out = out.split(s).join('***')
    return out
  }

  write(stream, text) {
    stream.write(this.redact(text))
  }

  /** One result record: a line of JSON, or kept for `flushTable`. */
  record(obj) {
    this.write(this.stdout, `${JSON.stringify(obj)}\n`)
  }

  /** Text for a person (tables, summaries). */
  line(text = '') {
    this.write(this.stdout, `${text}\n`)
  }

  /** `rows` (objects) as aligned columns: `columns` = [[header, row => text], ...]. */
  table(rows, columns) {
    const cells = rows.map((r) => columns.map(([, get]) => {
      const v = get(r)
      return v === undefined || v === null ? '-' : String(v)
    }))
    const widths = columns.map(([h], i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
    const fmt = (c) => c.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd()
    this.line(fmt(columns.map(([h]) => h)))
    for (const c of cells) this.line(fmt(c))
  }

  /** Progress and details for --verbose, on stderr. */
  verbose(text) {
    if (this.verboseOn) this.write(this.stderr, `ringbus: ${text}\n`)
  }

  error(code, message) {
    this.write(this.stderr, `ringbus: ${code ? `${code}: ` : ''}${message}\n`)
  }
}

/** ms since the epoch → ISO text; absent stays absent. */
const iso = (ms) => (ms === undefined || ms === null ? undefined : new Date(ms).toISOString())

/** A duration in ms for people: 950ms, 12.3s, 4m05s, 2h10m. */
function ago(ms) {
  if (ms === undefined || ms === null) return undefined
  if (ms < 1000) return `${Math.round(ms)}ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.round(ms / 1000)
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

module.exports = { Output, iso, ago }
