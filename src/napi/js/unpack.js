(function unpack(BusEvent, text, nums, slow, n) {
  // A page of group deliveries packed by napi/convert/packed.rs: per event eight numbers
  // (shardId, seq, timestamp, deliveries, then the UTF-16 lengths of id, key (-1: none),
  // raw and messageId, which follow one another in `text`); shardId -1: the event is the
  // next of `slow`, made natively. One call builds the page, instead of one per event.
  const out = new Array(n)
  let at = 0
  let s = 0
  for (let i = 0, k = 0; i < n; i++, k += 8) {
    const shardId = nums[k]
    if (shardId < 0) {
      out[i] = slow[s++]
      continue
    }
    const id = text.slice(at, (at += nums[k + 4]))
    const keyLen = nums[k + 5]
    const key = keyLen < 0 ? undefined : text.slice(at, (at += keyLen))
    const raw = text.slice(at, (at += nums[k + 6]))
    const messageId = text.slice(at, (at += nums[k + 7]))
    out[i] = new BusEvent(id, shardId, nums[k + 1], nums[k + 2], key, raw, undefined, messageId, nums[k + 3])
  }
  return out
})
