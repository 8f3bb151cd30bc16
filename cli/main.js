'use strict'
// The `ringbus` command: look at and operate a bus's store from a shell. Every command
// connects with --url (or RINGBUS_URL), does one thing and exits: 0 done, 1 a check
// breached, 2 could not do it (the error's ERR_* code is printed).

const { Command, Option, CommanderError } = require('commander')
const { resolveStore, secretsIn } = require('./connect')
const { CliError } = require('./errors')
const { Output } = require('./output')
const { parseStart, parseDuration } = require('./times')

const EXIT = { ok: 0, breach: 1, failed: 2 }

const EPILOG = `
Connection:
  --url nats://[user:password@|token@]host:4222[,host2:4222]/<stream>   (tls:// for TLS)
  --url redis://[user:password@]host:6379[/db]?prefix=<keyPrefix>     (rediss:// for TLS;
        several hosts or ?cluster=true for Redis Cluster)
  or RINGBUS_URL. Credentials also from RINGBUS_USER, RINGBUS_PASSWORD, RINGBUS_TOKEN,
  --password-file, --token-file or --creds-file; they are never printed.

Output: tables on a terminal; NDJSON (one record per line) with --json or when stdout
is not a terminal. Exit codes: 0 ok, 1 a check breached, 2 could not do it.`

function jsonArg(option, code) {
  return (text) => {
    try {
      return JSON.parse(text)
    } catch (e) {
      throw new CliError(code, `${option} must be JSON, e.g. '{"type":"order"}': ${e.message}`)
    }
  }
}

function countArg(option) {
  return (text) => {
    if (!/^\d+$/.test(text)) throw new CliError('ERR_INVALID_CONFIG', `${option} must be a whole number ≥ 0, got ${JSON.stringify(text)}`)
    return Number(text)
  }
}

const idsArg = (text) => text.split(',').map((s) => s.trim()).filter(Boolean)

/** Runs `action(bus, out)` against the store the global options name. */
async function withBus(program, action, { signal, secrets = [] } = {}) {
  const g = program.opts()
  const store = resolveStore(g)
  const out = new Output({ json: g.json ? true : g.table ? false : undefined, verbose: g.verbose, secrets: [...store.secrets, ...secrets] })
  program.ringbusOutput = out
  out.verbose(`connecting to ${store.describe}`)
  const { EventBus } = require('../main.js')
  const started = Date.now()
  const bus = await EventBus.create({ shards: 1, adapter: store.adapter })
  out.verbose(`connected in ${Date.now() - started} ms`)
  try {
    program.ringbusExit = await action(bus, out, signal)
  } finally {
    await bus.shutdown()
    out.verbose('disconnected')
  }
}

function build() {
  const program = new Command('ringbus')
  program
    .description('Look at and operate a ringbus store: streams, consumer groups, dead letters.')
    .option('--url <url>', 'the store (or RINGBUS_URL); see Connection below')
    .option('--password-file <file>', 'read the password from this file')
    .option('--token-file <file>', 'read the NATS token from this file')
    .option('--creds-file <file>', 'NATS credentials file (JWT and seed)')
    .option('--tls-ca <file>', 'PEM file of the CAs that sign the server certificate')
    .option('--tls-cert <file>', 'PEM client certificate for mutual TLS')
    .option('--tls-key <file>', 'PEM key of --tls-cert')
    .option('--json', 'NDJSON output (the default when stdout is not a terminal)')
    .option('--table', 'table output even when stdout is not a terminal')
    .option('-v, --verbose', 'say what is done, on stderr (never secrets)')
    .addHelpText('after', EPILOG)
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })

  program
    .command('info')
    .description('per shard: events held, bytes, oldest and newest event time')
    .addHelpText('after', '\nExample:\n  $ ringbus info --url nats://127.0.0.1:4222/orders')
    .action(() => withBus(program, (bus, out) => require('./commands/info').info(bus, out)))

  program
    .command('tail')
    .description('print events from a point in time, optionally matching a filter; --follow waits for new ones')
    .option('--from <start>', 'earliest, latest, an ISO time, a duration ago (15m) or a cursor (default: earliest; latest with --follow)')
    .option('--filter <json>', 'only events matching this filter (the language of poll)', jsonArg('--filter', 'ERR_INVALID_FILTER'))
    .option('--limit <n>', 'stop after n events, 0 for no limit (default: 100; none with --follow)', countArg('--limit'))
    .option('-f, --follow', 'keep printing new events until interrupted')
    .addHelpText('after', `\nExamples:\n  $ ringbus tail --from 15m --filter '{"type":"order"}'\n  $ ringbus tail --follow --json | jq .json`)
    .action((o) => {
      const from = parseStart(o.from ?? (o.follow ? 'latest' : 'earliest'), '--from')
      const limit = o.limit ?? (o.follow ? 0 : 100)
      const abort = new AbortController()
      for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => abort.abort())
      return withBus(program, (bus, out) => require('./commands/tail').tail(bus, out, { from, filter: o.filter, limit, follow: Boolean(o.follow), signal: abort.signal }))
    })

  program
    .command('groups')
    .description('every consumer group: members, lag, time behind, in flight, dead letters')
    .addHelpText('after', '\nExample:\n  $ ringbus groups --url redis://127.0.0.1:6379?prefix=ringbus')
    .action(() => withBus(program, (bus, out) => require('./commands/groups').groups(bus, out)))

  program
    .command('group')
    .description('one group per shard (owner, lease, committed position, lag); or `group reset <name> --to …`')
    .argument('<name>', 'the group, or `reset` followed by the group')
    .argument('[group]', 'with `reset`: the group to reset')
    .option('--to <start>', 'with reset: earliest, latest, an ISO time, a duration ago (1h) or a cursor')
    .option('--dry-run', 'with reset: say what would move, change nothing')
    .addHelpText('after', '\nExamples:\n  $ ringbus group billing\n  $ ringbus group reset billing --to 2026-12-03T08:00:00Z --dry-run\n  $ ringbus group reset billing --to latest\n\nA reset is refused while the group has live members: close them first.')
    .action((name, group, o) => {
      if (name !== 'reset' || group === undefined) {
        if (group !== undefined) throw new CliError('ERR_INVALID_CONFIG', `unexpected argument ${JSON.stringify(group)}: use \`ringbus group <name>\` or \`ringbus group reset <name> --to …\``)
        return withBus(program, (bus, out) => require('./commands/groups').group(bus, out, name))
      }
      if (o.to === undefined) throw new CliError('ERR_INVALID_CONFIG', 'group reset needs --to earliest|latest|<ISO time>|<duration ago>|<cursor>')
      const to = parseStart(o.to, '--to')
      return withBus(program, (bus, out) => require('./commands/groups').reset(bus, out, group, { to, dryRun: Boolean(o.dryRun) }))
    })

  const dlq = program.command('dlq').description("a group's dead letters: ls, show, redrive, purge")
  const letterOptions = (cmd) =>
    cmd
      .option('--filter <json>', 'only letters whose event matches this filter', jsonArg('--filter', 'ERR_INVALID_FILTER'))
  letterOptions(dlq.command('ls').argument('<group>').description('list dead letters, oldest first'))
    .option('--limit <n>', 'at most n letters, 0 for all (default: 100)', countArg('--limit'))
    .addHelpText('after', `\nExample:\n  $ ringbus dlq ls billing --filter '{"total":{"$gt":100}}'`)
    .action((group, o) => withBus(program, (bus, out) => require('./commands/dlq').ls(bus, out, group, { filter: o.filter, limit: o.limit ?? 100 })))
  dlq
    .command('show')
    .argument('<group>')
    .argument('<letterId>')
    .description('one dead letter in full')
    .action((group, id) => withBus(program, (bus, out) => require('./commands/dlq').show(bus, out, group, id)))
  letterOptions(dlq.command('redrive').argument('<group>').description('put dead letters back into the group (by --ids, --filter, or all)'))
    .option('--ids <ids>', 'comma-separated letter ids', idsArg)
    .option('--limit <n>', 'at most n letters, 0 for all (default: all)', countArg('--limit'))
    .option('--dry-run', 'count them, move nothing')
    .addHelpText('after', `\nExamples:\n  $ ringbus dlq redrive billing --filter '{"customer":"c-42"}' --dry-run\n  $ ringbus dlq redrive billing --ids 1733212800000-0,1733212800001-0`)
    .action((group, o) => withBus(program, (bus, out) => require('./commands/dlq').redrive(bus, out, group, { ids: o.ids, filter: o.filter, limit: o.limit ?? 0, dryRun: Boolean(o.dryRun) })))
  letterOptions(dlq.command('purge').argument('<group>').description('remove dead letters for good (by --ids, --filter, or all); needs --yes'))
    .option('--ids <ids>', 'comma-separated letter ids', idsArg)
    .option('--dry-run', 'count them, remove nothing')
    .option('--yes', 'really remove them')
    .addHelpText('after', '\nExample:\n  $ ringbus dlq purge billing --dry-run\n  $ ringbus dlq purge billing --yes')
    .action((group, o) => withBus(program, (bus, out) => require('./commands/dlq').purge(bus, out, group, { ids: o.ids, filter: o.filter, dryRun: Boolean(o.dryRun), yes: Boolean(o.yes) })))

  program
    .command('check')
    .description('compare groups with thresholds: exit 0 within them, 1 past one, 2 could not check')
    .option('--group <name...>', 'only these groups (default: every group)')
    .option('--max-lag <events>', 'most events a group may have unacked', countArg('--max-lag'))
    .option('--max-lag-age <duration>', 'most time behind, e.g. 30s or 5m', (t) => parseDuration(t, '--max-lag-age'))
    .option('--max-dead <letters>', 'most dead letters a group may hold', countArg('--max-dead'))
    .addOption(new Option('--format <format>', 'text, json, prometheus or nagios (default: text on a terminal, else json)').choices(['text', 'json', 'prometheus', 'nagios']))
    .addHelpText('after', '\nExamples:\n  $ ringbus check --max-lag 10000 --max-lag-age 30s\n  $ ringbus check --group billing --max-dead 0 --format nagios')
    .action((o) =>
      withBus(program, (bus, out) =>
        require('./commands/check').check(bus, out, { groups: o.group, format: o.format, maxLag: o.maxLag, maxLagAgeMs: o.maxLagAge, maxDead: o.maxDead }),
      ),
    )
  program
    .command('dashboard')
    .description('serve the web dashboard of this store until interrupted (binds 127.0.0.1 unless --host)')
    .option('--port <port>', 'port to listen on (0: any free one)', '7070')
    .option('--host <address>', 'address to bind; another than loopback needs --user', '127.0.0.1')
    .option('--read-only', 'refuse every write (403) and hide the write buttons')
    .option('--user <name>', 'require HTTP Basic authentication as this user')
    .option('--user-password-file <file>', "the dashboard user's password (or RINGBUS_DASHBOARD_PASSWORD); --password-file is the store's")
    .addHelpText('after', '\nExamples:\n  $ ringbus dashboard --url nats://127.0.0.1:4222/orders\n  $ ringbus dashboard --read-only --port 8080\n  $ ringbus dashboard --host 0.0.0.0 --user ops --user-password-file ./dashboard.pass')
    .action((o) => {
      const { settings, dashboard } = require('./commands/dashboard')
      const s = settings(o)
      const abort = new AbortController()
      for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => abort.abort())
      // The stream or key prefix only: the URL may hold a user name or credentials.
      const { adapter } = resolveStore(program.opts())
      const title = adapter.stream ?? adapter.keyPrefix ?? 'ringbus'
      return withBus(program, (bus, out) => dashboard(bus, out, s, title, abort.signal), { secrets: s.secrets })
    })
  return program
}

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
async function run(argv) {
  const program = build()
  let code = EXIT.ok
  try {
    await program.parseAsync(argv, { from: 'user' })
    code = program.ringbusExit ?? EXIT.ok
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return e.exitCode === 0 ? EXIT.ok : EXIT.failed
    }
    const out = program.ringbusOutput ?? new Output({ json: false, secrets: secretsIn(program.opts().url ?? process.env.RINGBUS_URL) })
    out.error(e.code, e.message ?? String(e))
    if (program.opts().verbose && e.stack) out.verbose(e.stack)
    return EXIT.failed
  }
  return code
}

module.exports = { run, build }
