// Stops the private servers the global setup started, if any.
module.exports = async () => {
  await globalThis.__ringbusTestServers?.stop()
}
