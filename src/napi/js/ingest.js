(function (stringified, withHeaders, native) {
  const stringify = JSON.stringify
  const isView = ArrayBuffer.isView
  return function ingest(event, options) {
    if (typeof event === 'object' && event !== null && !isView(event)) {
      let json
      try {
        json = stringify(event)
      } catch {
        return native(event, options)
      }
      if (typeof json === 'string') {
        if (options === undefined || options === null) return stringified(json, options)
        let headers
        try {
          headers = options.headers
        } catch {
          return native(event, options)
        }
        return headers === undefined ? stringified(json, options) : withHeaders(json, options)
      }
    }
    return native(event, options)
  }
})
