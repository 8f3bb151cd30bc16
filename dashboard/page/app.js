'use strict'
// The dashboard page: four views over the JSON API beside it. Built with DOM calls and
// textContent only (never HTML from data), refreshed by polling at most every 2 s.
;(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content
  const CSRF = meta('ringbus-csrf')
  const READ_ONLY = meta('ringbus-read-only') === 'true'
  const WRITES = new Set(meta('ringbus-writes').split(',').filter(Boolean))
  const REFRESH_MS = 2000
  const view = document.getElementById('view')
  let timer = null
  let charts = []

  // --- small helpers -------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag)
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
      else if (k === 'class') e.className = v
      else e.setAttribute(k, v === true ? '' : v)
    }
    for (const c of children.flat()) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c))
    return e
  }
  const fmt = (n) => (n === undefined || n === null ? '—' : Number(n).toLocaleString('en-US'))
  const iso = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—')
  function ago(ms) {
    if (ms === undefined || ms === null) return '—'
    const s = Math.round(ms / 1000)
    if (s < 60) return `${s} s`
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  }
  function status(text, bad) {
    const s = document.getElementById('status')
    s.textContent = text
    s.className = bad ? 'bad' : ''
  }
  async function api(path, body) {
    const init = body === undefined ? {} : { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Ringbus-Csrf': CSRF }, body: JSON.stringify(body) }
    const res = await fetch(`api/${path}`, { credentials: 'same-origin', ...init })
    const data = await res.json().catch(() => ({ error: { code: `HTTP ${res.status}`, message: res.statusText } }))
    if (!res.ok || data.error) throw Object.assign(new Error(data.error ? data.error.message : res.statusText), { code: data.error && data.error.code })
    return data
  }
  const canWrite = (action) => !READ_ONLY && WRITES.has(action)
  function table(columns, rows, rowClass) {
    return el(
      'table',
      {},
      el('thead', {}, el('tr', {}, columns.map(([h]) => el('th', {}, h)))),
      el('tbody', {}, rows.map((r) => el('tr', { class: rowClass ? rowClass(r) : undefined }, columns.map(([, f]) => el('td', {}, f(r)))))),
    )
  }
  function every(fn) {
    let stopped = false
    const tick = async () => {
      if (stopped) return
      try {
        await fn()
        status(`updated ${new Date().toLocaleTimeString()}`)
      } catch (e) {
        status(`${e.code || 'error'}: ${e.message}`, true)
      }
      if (!stopped) timer = setTimeout(tick, REFRESH_MS)
    }
    tick()
    return () => {
      stopped = true
      clearTimeout(timer)
    }
  }
  function chart(target, title, series, data) {
    const dark = matchMedia('(prefers-color-scheme: dark)').matches
    const axis = { stroke: dark ? '#ccc' : '#333', grid: { stroke: dark ? '#333' : '#eee' } }
    const colors = ['#2f7ed8', '#e4572e', '#17bebb', '#ffc914', '#76b041', '#9b5de5']
    const opts = {
      title,
      width: 560,
      height: 180,
      // The last five minutes (the history keeps ten), so a few points do not stretch.
      scales: { x: { time: true, auto: false, range: () => [Date.now() / 1000 - 300, Date.now() / 1000] } },
      axes: [axis, { ...axis, label: 'events/s' }],
      series: [{}, ...series.map((label, i) => ({ label, stroke: colors[i % colors.length], width: 2 }))],
    }
    charts.push(new window.uPlot(opts, data, target))
  }

  // --- overview --------------------------------------------------------------------------
  function rates(history, pick) {
    const xs = []
    const ys = []
    for (let i = 1; i < history.length; i++) {
      const dt = (history[i].t - history[i - 1].t) / 1000
      xs.push(history[i].t / 1000)
      ys.push(Math.max(0, (pick(history[i]) - pick(history[i - 1])) / dt))
    }
    return [xs, ys]
  }

  function overview() {
    return every(async () => {
      const o = await api('overview')
      document.getElementById('title').textContent = o.title || ''
      charts.forEach((c) => c.destroy())
      charts = []
      const groups = o.groups.map((g) =>
        el(
          'tr',
          { class: g.alert ? 'alert' : undefined, 'data-group': g.group },
          el('td', {}, el('a', { href: `#/group/${encodeURIComponent(g.group)}` }, g.group)),
          el('td', {}, g.noMembers ? el('span', { class: 'badge' }, 'no members') : fmt(g.members)),
          el('td', { class: 'num', 'data-field': 'lag' }, fmt(g.lag)),
          el('td', { class: 'num', 'data-field': 'behind' }, ago(g.lagAgeMs)),
          el('td', { class: 'num' }, fmt(g.inFlight)),
          el('td', { class: 'num' }, el('a', { href: `#/letters/${encodeURIComponent(g.group)}` }, fmt(g.deadLetters))),
        ),
      )
      const charted = el('div', { class: 'charts' })
      view.replaceChildren(
        el('h2', {}, 'Stream'),
        el('p', {}, `${fmt(o.stored)} events stored on ${o.shards.length} shards`),
        table(
          [
            ['shard', (s) => s.id],
            ['events', (s) => fmt(s.count)],
            ['bytes', (s) => fmt(s.bytes)],
            ['oldest', (s) => iso(s.firstAt)],
            ['newest', (s) => iso(s.lastAt)],
          ],
          o.shards,
        ),
        charted,
        el('h2', {}, 'Consumer groups'),
        o.groups.length === 0
          ? el('p', {}, 'No consumer groups.')
          : el(
              'table',
              { id: 'groups' },
              el('thead', {}, el('tr', {}, ['group', 'members', 'lag (events)', 'time behind', 'in flight', 'dead letters'].map((h) => el('th', {}, h)))),
              el('tbody', {}, groups),
            ),
        el('p', { class: 'hint' }, `Highlighted: lag over ${fmt(o.thresholds.lag)} events, more than ${ago(o.thresholds.lagAgeMs)} behind, or dead letters.`),
      )
      if (o.history.length > 1 && window.uPlot) {
        const ingest = rates(o.history, (h) => h.stored)
        chart(charted, 'ingest (stored events/s)', ['stored'], ingest)
        const names = o.groups.map((g) => g.group)
        if (names.length > 0) {
          const data = [ingest[0], ...names.map((n) => rates(o.history, (h) => h.consumed[n] ?? 0)[1])]
          chart(charted, 'consumed by group (events/s)', names, data)
        }
      }
    })
  }

  // --- group -----------------------------------------------------------------------------
  function group(name) {
    const body = el('div')
    const form = resetForm(name)
    view.replaceChildren(el('h2', {}, `Group ${name}`), body, form.node)
    return every(async () => {
      const g = await api(`group?name=${encodeURIComponent(name)}`)
      form.update(g.resettable)
      const now = Date.now()
      body.replaceChildren(
        el('p', {}, `lag ${fmt(g.lag)} events, ${ago(g.lagAgeMs)} behind; ${fmt(g.inFlight)} in flight; `, el('a', { href: `#/letters/${encodeURIComponent(name)}` }, `${fmt(g.deadLetters)} dead letters`)),
        el('h3', {}, 'Members'),
        g.members.length === 0
          ? el('p', {}, el('span', { class: 'badge' }, 'no members'))
          : table(
              [
                ['member', (m) => m.name],
                ['last renewal', (m) => `${ago(now - m.renewedAt)} ago`],
              ],
              g.members,
            ),
        el('h3', {}, 'Shards'),
        table(
          [
            ['shard', (s) => s.id],
            ['owner', (s) => s.owner || '—'],
            ['lease expires in', (s) => (s.leaseUntil ? ago(s.leaseUntil - now) : '—')],
            ['committed', (s) => s.committed || 'start'],
            ['lag', (s) => fmt(s.lag)],
            ['time behind', (s) => ago(s.lagAgeMs)],
          ],
          g.shards,
        ),
      )
    })
  }

  function resetForm(name) {
    if (!canWrite('reset')) return { node: el('div'), update() {} }
    const to = el('select', { name: 'to' }, el('option', { value: 'earliest' }, 'earliest'), el('option', { value: 'latest' }, 'latest'), el('option', { value: 'time' }, 'a time'))
    const time = el('input', { type: 'datetime-local', name: 'time' })
    const out = el('pre', { class: 'result' })
    let planned = false
    const target = () => (to.value === 'time' ? { time: new Date(time.value).toISOString() } : to.value)
    const dry = el('button', { type: 'button' }, 'Dry run')
    const run = el('button', { type: 'button', class: 'danger', disabled: true }, 'Reset')
    dry.addEventListener('click', async () => {
      try {
        const plan = await api('group/reset', { group: name, to: target(), dryRun: true })
        out.textContent = plan.shards.map((s) => `shard ${s.id}: lag ${s.lagBefore} → ${s.lagAfter}`).join('\n')
        planned = true
        run.disabled = !form.resettable
      } catch (e) {
        out.textContent = `${e.code}: ${e.message}`
      }
    })
    run.addEventListener('click', async () => {
      if (!planned || !confirm(`Reset group ${name} to ${JSON.stringify(target())}?`)) return
      try {
        const done = await api('group/reset', { group: name, to: target(), dryRun: false })
        out.textContent = `reset: ${done.shards.length} shards moved`
      } catch (e) {
        out.textContent = `${e.code}: ${e.message}`
      }
    })
    const note = el('p', { class: 'hint' })
    const form = {
      resettable: false,
      node: el('section', { class: 'form' }, el('h3', {}, 'Reset'), el('label', {}, 'to ', to), time, dry, run, note, out),
      update(resettable) {
        form.resettable = resettable
        dry.disabled = !resettable
        run.disabled = !resettable || !planned
        note.textContent = resettable ? 'Dry run first: it shows what moves.' : 'Disabled while members are live or hold leases: stop them first.'
      },
    }
    return form
  }

  // --- messages --------------------------------------------------------------------------
  function eventCard(ev, selectable) {
    const head = [`#${ev.seq} · shard ${ev.shardId} · ${iso(ev.timestamp)}`, ev.key ? ` · key ${ev.key}` : '', ` · id ${ev.id}`]
    if (ev.traceId) head.push(` · trace ${ev.traceId}`)
    const card = el('article', { class: 'event', 'data-id': ev.id, 'data-letter': ev.letterId })
    if (selectable) card.append(el('input', { type: 'checkbox', class: 'pick', value: ev.letterId, 'aria-label': `select letter ${ev.letterId}` }))
    card.append(el('header', {}, head.join('')))
    if (ev.reason) card.append(el('p', { class: 'reason' }, `${ev.reason} (after ${ev.deliveries} deliveries, ${iso(ev.deadLetteredAt)})`))
    if (ev.headers) card.append(el('p', { class: 'headers' }, Object.entries(ev.headers).map(([k, v]) => `${k}: ${v}`).join('  ')))
    const payload = ev.json !== undefined ? JSON.stringify(ev.json, null, 2) : ev.raw !== undefined ? ev.raw : `bytes (base64): ${ev.bytes}`
    card.append(el('pre', { class: 'payload' }, payload))
    return card
  }

  function download(name, events) {
    const blob = new Blob(events.map((e) => `${JSON.stringify(e)}\n`), { type: 'application/x-ndjson' })
    const a = el('a', { href: URL.createObjectURL(blob), download: name })
    document.body.append(a)
    a.click()
    a.remove()
  }

  // Answers can arrive out of order (the first load, then a click right after it): only the
  // newest request of a view may draw, or an older page could replace a filtered one.
  function newest() {
    let latest = 0
    return () => {
      const mine = ++latest
      return () => mine === latest
    }
  }

  function messages() {
    const from = el('select', { name: 'from' }, el('option', { value: 'earliest' }, 'the start'), el('option', { value: 'end' }, 'the end (last minute)'), el('option', { value: 'time' }, 'a time'))
    const time = el('input', { type: 'datetime-local', name: 'time' })
    const cursor = el('input', { name: 'cursor', placeholder: 'or a cursor' })
    const filter = el('textarea', { name: 'filter', rows: 2, placeholder: 'filter, e.g. {"type":"order"}' })
    const id = el('input', { name: 'id', placeholder: 'look up an id' })
    const list = el('div', { id: 'events' })
    const info = el('p', { class: 'hint' })
    let page = null
    const begin = newest()
    const load = async (next) => {
      const current = begin()
      info.textContent = 'reading…'
      const q = new URLSearchParams({ limit: '50' })
      if (filter.value.trim()) q.set('filter', filter.value)
      if (id.value.trim()) q.set('id', id.value.trim())
      else if (next && page) q.set('cursor', page.cursor)
      else if (cursor.value.trim()) q.set('cursor', cursor.value.trim())
      else q.set('from', from.value === 'time' ? new Date(time.value).toISOString() : from.value)
      try {
        const answer = await api(`messages?${q}`)
        if (!current()) return
        page = answer
        list.replaceChildren(...page.events.map((e) => eventCard(e, false)))
        info.textContent = `${page.events.length} events${page.hasMore ? ', more after' : ''}${page.note ? `; ${page.note}` : ''}`
        status(`read ${new Date().toLocaleTimeString()}`)
      } catch (e) {
        if (current()) status(`${e.code}: ${e.message}`, true)
      }
    }
    view.replaceChildren(
      el('h2', {}, 'Messages'),
      el(
        'section',
        { class: 'form' },
        el('label', {}, 'from ', from),
        time,
        cursor,
        filter,
        id,
        el('button', { type: 'button', id: 'read', onclick: () => load(false) }, 'Read'),
        el('button', { type: 'button', id: 'next', onclick: () => load(true) }, 'Next page'),
        el('button', { type: 'button', id: 'export', onclick: () => page && download('events.ndjson', page.events) }, 'Export page (NDJSON)'),
      ),
      info,
      list,
    )
    load(false)
    return () => {}
  }

  // --- dead letters ----------------------------------------------------------------------
  async function letters(name) {
    const o = await api('overview')
    const pick = el('select', { name: 'group' }, o.groups.map((g) => el('option', { value: g.group, selected: g.group === name }, g.group)))
    const reason = el('input', { name: 'reason', placeholder: 'reason contains' })
    const filter = el('textarea', { name: 'filter', rows: 2, placeholder: 'filter on the event, e.g. {"type":"order"}' })
    const list = el('div', { id: 'letters' })
    const info = el('p', { class: 'hint' })
    const out = el('p', { class: 'result', id: 'outcome' })
    const group = () => pick.value
    const criteria = () => {
      const c = {}
      if (reason.value.trim()) c.reason = reason.value.trim()
      if (filter.value.trim()) c.filter = JSON.parse(filter.value)
      return c
    }
    const begin = newest()
    const load = async () => {
      if (!group()) return
      const current = begin()
      const q = new URLSearchParams({ group: group(), limit: '100' })
      if (reason.value.trim()) q.set('reason', reason.value.trim())
      if (filter.value.trim()) q.set('filter', filter.value)
      try {
        const page = await api(`letters?${q}`)
        if (!current()) return
        list.replaceChildren(...page.events.map((e) => eventCard(e, canWrite('redeliver') || canWrite('purge'))))
        info.textContent = `${page.events.length} letters shown${page.hasMore ? ', more after' : ''}`
      } catch (e) {
        if (current()) status(`${e.code}: ${e.message}`, true)
      }
    }
    const selected = () => [...list.querySelectorAll('input.pick:checked')].map((i) => i.value)
    // Every write: a dry run for the count, a confirmation, then the write.
    const act = (action, verb, which) => async () => {
      try {
        const scope = which === 'selected' ? { letterIds: selected() } : { all: true, ...criteria() }
        if (which === 'selected' && scope.letterIds.length === 0) return (out.textContent = 'Select letters first.')
        const dry = await api(`letters/${action}`, { group: group(), ...scope, dryRun: true })
        if (dry.count === 0) return (out.textContent = `Nothing to ${verb}.`)
        if (!confirm(`${verb} ${dry.count} dead letter${dry.count === 1 ? '' : 's'} of ${group()}?`)) return (out.textContent = 'Cancelled.')
        const done = await api(`letters/${action}`, { group: group(), ...scope, dryRun: false })
        out.textContent = `${verb}: ${done.count}`
        await load()
      } catch (e) {
        out.textContent = `${e.code}: ${e.message}`
      }
    }
    const buttons = []
    if (canWrite('redeliver')) {
      buttons.push(el('button', { type: 'button', id: 'redrive-selected', onclick: act('redeliver', 'Redrive', 'selected') }, 'Redrive selected'))
      buttons.push(el('button', { type: 'button', id: 'redrive-all', onclick: act('redeliver', 'Redrive', 'all') }, 'Redrive all matching'))
    }
    if (canWrite('purge')) {
      buttons.push(el('button', { type: 'button', class: 'danger', id: 'purge-selected', onclick: act('purge', 'Purge', 'selected') }, 'Purge selected'))
      buttons.push(el('button', { type: 'button', class: 'danger', id: 'purge-all', onclick: act('purge', 'Purge', 'all') }, 'Purge all matching'))
    }
    pick.addEventListener('change', () => {
      location.hash = `#/letters/${encodeURIComponent(group())}`
    })
    view.replaceChildren(
      el('h2', {}, 'Dead letters'),
      el('section', { class: 'form' }, el('label', {}, 'group ', pick), reason, filter, el('button', { type: 'button', id: 'load', onclick: load }, 'Show')),
      el('section', { class: 'actions' }, buttons),
      out,
      info,
      list,
    )
    if (o.groups.length === 0) info.textContent = 'No consumer groups.'
    await load()
    return () => {}
  }

  // --- routing ---------------------------------------------------------------------------
  let stop = () => {}
  async function route() {
    stop()
    charts.forEach((c) => c.destroy())
    charts = []
    const [, name, arg] = /^#\/([a-z]+)(?:\/(.*))?$/.exec(location.hash) || [null, 'overview']
    const param = arg === undefined ? undefined : decodeURIComponent(arg)
    for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.view === name)
    try {
      if (name === 'group' && param) stop = group(param)
      else if (name === 'messages') stop = messages()
      else if (name === 'letters') stop = (await letters(param)) || (() => {})
      else stop = overview()
    } catch (e) {
      status(`${e.code || 'error'}: ${e.message}`, true)
    }
  }
  document.getElementById('mode').textContent = READ_ONLY ? 'read-only' : ''
  window.addEventListener('hashchange', route)
  route()
})()
