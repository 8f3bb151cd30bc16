'use strict'
const { ago, iso } = require('../output')

/** `ringbus groups`: one row per group. */
async function groups(bus, out) {
  const rows = await bus.groups()
  if (out.json) {
    for (const r of rows) out.record(r)
    return 0
  }
  if (rows.length === 0) {
    out.line('no consumer groups in this store')
    return 0
  }
  out.table(rows, [
    ['GROUP', (r) => r.group],
    ['MEMBERS', (r) => (r.members === 0 ? '0 (no members)' : r.members)],
    ['LAG', (r) => r.lag],
    ['BEHIND', (r) => ago(r.lagAgeMs)],
    ['IN FLIGHT', (r) => r.inFlight],
    ['REDELIVERED', (r) => r.redelivered],
    ['DEAD', (r) => r.deadLetters],
  ])
  return 0
}

/** `ringbus group <name>`: members, then one row per shard. */
async function group(bus, out, name) {
  const g = await bus.group(name)
  if (out.json) {
    out.record(g)
    return 0
  }
  out.line(`group ${g.group}: lag ${g.lag}${g.lagAgeMs !== undefined ? ` (${ago(g.lagAgeMs)} behind)` : ''}, in flight ${g.inFlight}, redelivered ${g.redelivered}, dead letters ${g.deadLetters}, returned ${g.returned}`)
  out.line()
  if (g.members.length === 0) out.line('members: none')
  else {
    out.table(g.members, [
      ['MEMBER', (m) => m.name],
      ['RENEWED', (m) => `${ago(Date.now() - m.renewedAt)} ago`],
      ['EXPIRES', (m) => iso(m.expiresAt)],
    ])
  }
  out.line()
  out.table(g.shards, [
    ['SHARD', (s) => s.id],
    ['OWNER', (s) => s.owner],
    ['LEASE UNTIL', (s) => iso(s.leaseUntil)],
    ['COMMITTED', (s) => s.committed ?? '(start)'],
    ['LAG', (s) => s.lag],
    ['BEHIND', (s) => ago(s.lagAgeMs)],
    ['IN FLIGHT', (s) => s.inFlight],
  ])
  return 0
}

/** `ringbus group reset <name> --to …`: says what moved (or would). */
async function reset(bus, out, name, { to, dryRun }) {
  const r = await bus.resetGroup(name, { to, dryRun })
  if (out.json) {
    out.record(r)
    return 0
  }
  out.table(r.shards, [
    ['SHARD', (s) => s.id],
    ['FROM', (s) => s.from ?? '(start)'],
    ['TO', (s) => s.to ?? '(start)'],
    ['LAG BEFORE', (s) => s.lagBefore],
    ['LAG AFTER', (s) => s.lagAfter],
  ])
  const after = r.shards.reduce((n, s) => n + s.lagAfter, 0)
  out.line(r.dryRun ? `dry run: group ${name} would have ${after} events to deliver; nothing was changed` : `group ${name} reset: ${after} events to deliver`)
  return 0
}

module.exports = { groups, group, reset }
