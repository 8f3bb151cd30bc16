(function (root, what) {
  const seen = new Set()
  // A plain object's prototype is some realm's Object.prototype (Jest has its own) or null.
  const plain = (v) => {
    const proto = Object.getPrototypeOf(v)
    return proto === null || Object.getPrototypeOf(proto) === null
  }
  const lone = 'contains a lone UTF-16 surrogate (e.g. a string cut through an emoji); make it well-formed (str.toWellFormed())'
  function walk(v, path, inFilter, depth) {
    if (typeof v === 'string' && !v.isWellFormed()) return [path, lone, inFilter]
    if (typeof v === 'number' && !Number.isFinite(v)) return [path, `is ${v}; give a finite number`, inFilter]
    if (inFilter && v === undefined) return [path, 'is undefined; remove the key or give a value (an undefined operand would match every event)', true]
    if (inFilter && (typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint')) return [path, `is a ${typeof v}; a filter holds JSON values only`, true]
    if (v === null || typeof v !== 'object') return null
    // A class instance (a tracer provider, a socket) is no option value; its contents are
    // not walked, and it is passed on as a placeholder so the key is named (unknown, or of
    // the wrong type) instead of reporting the instance's own cycles.
    if (!inFilter && !Array.isArray(v) && !plain(v)) return null
    if (depth > 64 || seen.has(v)) return [path, 'nests too deep or contains a cycle', inFilter]
    if (inFilter && typeof v.toJSON === 'function' && Object.prototype.toString.call(v) !== '[object Date]') return [path, 'has a toJSON method; a filter holds plain JSON values only', true]
    seen.add(v)
    for (const k of Object.keys(v)) {
      const sub = Array.isArray(v) ? `${path}[${k}]` : `${path}.${k}`
      if (!k.isWellFormed()) return [sub, `key ${lone}`, inFilter || (depth === 0 && k === 'filter')]
      const r = walk(v[k], sub, inFilter || (depth === 0 && k === 'filter'), depth + 1)
      if (r) return r
    }
    seen.delete(v)
    return null
  }
  const instance = (k, v) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && !plain(v) &&
    Object.prototype.toString.call(v) !== '[object Date]'
      ? `[instance of ${(v.constructor && v.constructor.name) || 'a class'}]`
      : v
  return walk(root, what, false, 0) ?? JSON.stringify(root, instance)
})
