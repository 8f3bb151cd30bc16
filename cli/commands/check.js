'use strict'
// `ringbus check`: compares every group (or the ones named) with thresholds and says so in
// the format monitoring expects. Exit 0 within limits, 1 a limit breached (2: could not check).

const { CliError } = require('../errors')

function breaches(g, limits) {
  const out = []
  if (limits.maxLag !== undefined && g.lag > limits.maxLag) out.push(`lag ${g.lag} > ${limits.maxLag}`)
  if (limits.maxLagAgeMs !== undefined && (g.lagAgeMs ?? 0) > limits.maxLagAgeMs) out.push(`lag age ${Math.round(g.lagAgeMs)} ms > ${limits.maxLagAgeMs} ms`)
  if (limits.maxDead !== undefined && g.deadLetters > limits.maxDead) out.push(`dead letters ${g.deadLetters} > ${limits.maxDead}`)
  return out
}

const label = (v) => String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

function prometheus(out, results, ok) {
  const metric = (name, help, type, value) => {
    out.line(`# HELP ${name} ${help}`)
    out.line(`# TYPE ${name} ${type}`)
    for (const r of results) out.line(`${name}{group="${label(r.group)}"} ${value(r)}`)
  }
  metric('ringbus_check_group_lag', 'Events stored and not yet acked by the group.', 'gauge', (r) => r.lag)
  metric('ringbus_check_group_lag_age_seconds', 'Age of the oldest event the group has not acked.', 'gauge', (r) => (r.lagAgeMs ?? 0) / 1000)
  metric('ringbus_check_group_dead_letters', 'Dead letters the group holds.', 'gauge', (r) => r.deadLetters)
  metric('ringbus_check_group_breached', '1 when the group passes a threshold of this check.', 'gauge', (r) => (r.breaches.length > 0 ? 1 : 0))
  out.line('# HELP ringbus_check_ok 1 when every group is within the thresholds.')
  out.line('# TYPE ringbus_check_ok gauge')
  out.line(`ringbus_check_ok ${ok ? 1 : 0}`)
}

function nagios(out, results, ok, limits) {
  const bad = results.filter((r) => r.breaches.length > 0)
  const summary = ok ? `${results.length} group${results.length === 1 ? '' : 's'} within limits` : bad.map((r) => `${r.group}: ${r.breaches.join(', ')}`).join('; ')
  const perf = results
    .map((r) => `'${r.group}_lag'=${r.lag};${limits.maxLag ?? ''} '${r.group}_lag_age'=${((r.lagAgeMs ?? 0) / 1000).toFixed(3)}s;${limits.maxLagAgeMs !== undefined ? limits.maxLagAgeMs / 1000 : ''} '${r.group}_dead'=${r.deadLetters};${limits.maxDead ?? ''}`)
    .join(' ')
  out.line(`RINGBUS ${ok ? 'OK' : 'WARNING'} - ${summary}${perf ? ` | ${perf}` : ''}`)
}

async function check(bus, out, { groups: names, format, ...limits }) {
  if (limits.maxLag === undefined && limits.maxLagAgeMs === undefined && limits.maxDead === undefined) {
    throw new CliError('ERR_INVALID_CONFIG', 'check needs at least one threshold: --max-lag <events>, --max-lag-age <duration> or --max-dead <letters>')
  }
  let rows = await bus.groups()
  if (names && names.length > 0) {
    const missing = names.filter((n) => !rows.some((r) => r.group === n))
    if (missing.length > 0) throw new CliError('ERR_INVALID_CONFIG', `no consumer group ${missing.map((n) => JSON.stringify(n)).join(', ')} in this store; \`ringbus groups\` lists them`)
    rows = rows.filter((r) => names.includes(r.group))
  }
  const results = rows.map((r) => ({ ...r, breaches: breaches(r, limits) }))
  const ok = results.every((r) => r.breaches.length === 0)
  const fmt = format ?? (out.json ? 'json' : 'text')
  if (fmt === 'json') out.record({ status: ok ? 'ok' : 'breach', groups: results })
  else if (fmt === 'prometheus') prometheus(out, results, ok)
  else if (fmt === 'nagios') nagios(out, results, ok, limits)
  else {
    for (const r of results) out.line(`${r.breaches.length ? 'BREACH' : 'OK'}  ${r.group}  lag ${r.lag}  dead ${r.deadLetters}${r.breaches.length ? `  (${r.breaches.join(', ')})` : ''}`)
    out.line(ok ? `ok: ${results.length} group${results.length === 1 ? '' : 's'} within limits` : `breach: ${results.filter((r) => r.breaches.length).length} of ${results.length} groups past a limit`)
  }
  return ok ? 0 : 1
}

module.exports = { check }
