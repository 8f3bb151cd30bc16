'use strict'
const { CliError } = require('../errors')
const { defined, letterRecord, preview } = require('../records')
const { iso } = require('../output')

/** `ringbus dlq ls <group>`: dead letters, oldest first. */
async function ls(bus, out, group, { filter, limit }) {
  let shown = 0
  let cursor
  const rows = []
  for (;;) {
    const want = limit === 0 ? 1000 : Math.min(limit - shown, 1000)
    const page = await bus.deadLetters(group, defined({ filter, limit: want, cursor }))
    for (const l of page.events) {
      const r = letterRecord(l)
      if (out.json) out.record(r)
      else rows.push(r)
      shown++
    }
    cursor = page.cursor
    if (!page.hasMore || (limit !== 0 && shown >= limit)) break
  }
  if (!out.json) {
    out.table(rows, [
      ['LETTER', (r) => r.letterId],
      ['DEAD SINCE', (r) => iso(r.deadLetteredAt)],
      ['TRIES', (r) => r.deliveries],
      ['KEY', (r) => r.key],
      ['REASON', (r) => (r.reason.length > 40 ? `${r.reason.slice(0, 39)}…` : r.reason)],
      ['EVENT', (r) => preview(r, 50)],
    ])
    out.line(`${letters(rows.length)} shown`)
  }
  return 0
}

/** `ringbus dlq show <group> <letterId>`: one letter in full. */
async function show(bus, out, group, letterId) {
  let cursor
  for (;;) {
    const page = await bus.deadLetters(group, defined({ limit: 1000, cursor }))
    const found = page.events.find((l) => l.letterId === letterId)
    if (found) {
      const r = letterRecord(found)
      if (out.json) out.record(r)
      else out.line(JSON.stringify(r, null, 2))
      return 0
    }
    if (!page.hasMore) break
    cursor = page.cursor
  }
  throw new CliError('ERR_INVALID_CONFIG', `group ${group} has no dead letter ${JSON.stringify(letterId)}; \`ringbus dlq ls ${group}\` lists them`)
}

const letters = (n) => `${n} dead letter${n === 1 ? '' : 's'}`

function report(out, what, group, count, dryRun) {
  if (out.json) out.record({ group, action: what, dryRun, count })
  else if (dryRun) out.line(`dry run: ${letters(count)} of group ${group} would be ${what === 'redrive' ? 'redelivered' : 'purged'}; nothing was changed`)
  else out.line(`${what === 'redrive' ? 'redelivered' : 'purged'} ${letters(count)} of group ${group}`)
  return 0
}

/** `ringbus dlq redrive <group>`: back into the group, by ids or filter. */
async function redrive(bus, out, group, { ids, filter, limit, dryRun }) {
  let count
  if (ids) {
    if (filter) throw new CliError('ERR_INVALID_CONFIG', 'give --ids or --filter, not both')
    // A purge's dry run counts the letters the ids select, and changes nothing.
    count = dryRun ? await bus.purgeDeadLetters(group, { letterIds: ids, dryRun: true }) : await bus.redeliver(group, ids)
  } else {
    count = await bus.redeliver(group, defined({ filter, limit: limit === 0 ? undefined : limit, dryRun }))
  }
  return report(out, 'redrive', group, count, dryRun)
}

/** `ringbus dlq purge <group>`: removed for good; needs --yes (or --dry-run). */
async function purge(bus, out, group, { ids, filter, dryRun, yes }) {
  if (!dryRun && !yes) {
    throw new CliError('ERR_INVALID_CONFIG', `purging removes dead letters for good: run with --dry-run to count them, then again with --yes`)
  }
  const count = await bus.purgeDeadLetters(group, defined({ letterIds: ids, filter, dryRun }))
  return report(out, 'purge', group, count, dryRun)
}

module.exports = { ls, show, redrive, purge }
