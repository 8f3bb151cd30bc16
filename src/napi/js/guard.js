(function (sink) {
  return function (record) {
    try {
      sink(record)
    } catch (_) {}
  }
})
