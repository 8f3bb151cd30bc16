(function (worker, handler) {
  const describe = (e) => {
    try {
      if (e !== null && typeof e === 'object' && 'message' in e) return String(e.message)
      return String(e)
    } catch (_) {
      return 'handler failed with a value that cannot be described'
    }
  }
  // The error's type for metrics and spans (`error.type`): its code, else its class name.
  const named = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/
  const kind = (e) => {
    try {
      const code = e !== null && typeof e === 'object' ? e.code : undefined
      if (typeof code === 'string' && named.test(code)) return code
      const name = e !== null && e !== undefined ? e.constructor && e.constructor.name : undefined
      if (typeof name === 'string' && named.test(name)) return name
    } catch (_) {
      // A hostile getter: the fallback below.
    }
    return '_OTHER'
  }
  let done = []
  const flush = () => {
    if (done.length === 0) return
    const tokens = done
    done = []
    worker.settleAll(tokens)
  }
  const ok = (token) => {
    if (done.push(token) === 1) queueMicrotask(flush)
  }
  // The handler's result is adopted with the intrinsic Promise.resolve and then: a
  // thenable whose then throws, or a then getter that throws, rejects instead of escaping.
  const resolve = (v) => Promise.resolve(v)
  const then = Promise.prototype.then
  const run = (ev, token) => {
    try {
      const p = handler(ev)
      if (p === null || (typeof p !== 'object' && typeof p !== 'function')) {
        ok(token)
        return
      }
      then.call(resolve(p), () => ok(token), (e) => worker.settle(token, describe(e), kind(e)))
    } catch (e) {
      worker.settle(token, describe(e), kind(e))
    }
  }
  const loop = async () => {
    for (;;) {
      // Slots free up only when settled: settle before asking for more.
      flush()
      const batch = await worker.take()
      // Empty: closing. `skipped`: the turn's events could not be made into JS objects and
      // were settled as failed natively.
      if (batch.length === 0) {
        if (batch.skipped) continue
        return
      }
      for (let i = 0; i < batch.length; i++) run(batch[i], (batch.first + i) >>> 0)
    }
  }
  // Nothing above throws by design; should it, the worker stops and says why instead of
  // leaving an unhandled rejection (which exits Node) and a worker that never closes.
  loop().catch((e) => worker.abort(describe(e)))
})
