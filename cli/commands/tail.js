'use strict'
const { defined, eventRecord, preview } = require('../records')
const { iso } = require('../output')

function show(out, ev) {
  const r = eventRecord(ev)
  if (out.json) out.record(r)
  else out.line(`${iso(r.timestamp)}  ${r.id}  ${r.key ?? '-'}  ${preview(r, 100)}`)
}

/**
 * `ringbus tail`: events from `from` (default: earliest, or latest with --follow), up to
 * `limit` (0: no limit); with `follow`, waits for new ones until interrupted.
 */
async function tail(bus, out, { from, filter, limit, follow, signal }) {
  let shown = 0
  const more = () => limit === 0 || shown < limit
  if (!follow) {
    // The first page starts at `from`, the others at the cursor; none asks past the limit.
    let at = { from }
    for (;;) {
      const page = await bus.poll(defined({ ...at, filter, limit: limit === 0 ? 1000 : Math.min(limit - shown, 1000) }))
      for (const ev of page.events) {
        show(out, ev)
        shown++
      }
      if (!page.hasMore || !more()) return 0
      at = { cursor: page.cursor }
    }
  }
  const sub = bus.subscribe(defined({ from, filter }))
  // Ending the subscription settles a pending next() as done.
  const stop = () => void sub.return()
  signal.addEventListener('abort', stop, { once: true })
  try {
    for await (const ev of sub) {
      show(out, ev)
      shown++
      if (!more()) break
    }
  } catch (e) {
    if (!signal.aborted) throw e
  } finally {
    signal.removeEventListener('abort', stop)
    await sub.return()
  }
  return 0
}

module.exports = { tail }
