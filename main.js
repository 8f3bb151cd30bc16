'use strict'
// The package entry. `index.js` is napi-rs's generated loader: it finds the addon built in
// this folder (`npm run build` in a checkout) or the prebuilt one in the platform package
// npm installed beside this one (`ringbus-<platform>`, an optional dependency). When there
// is none, this says which platform lacks one and how to build it, instead of passing on
// the loader's generic message.
let binding
try {
  binding = require('./index.js')
} catch (cause) {
  const musl = process.platform === 'linux' && !process.report?.getReport?.().header?.glibcVersionRuntime
  const platform = `${process.platform}-${process.arch}${musl ? '-musl' : ''}`
  const error = new Error(
    `ringbus has no native addon for ${platform} (Node ${process.versions.node}) that loads: ` +
      `${cause && cause.message} Prebuilt addons come as the platform packages in ringbus's ` +
      'optionalDependencies; check that npm installed the one for this platform (it skips them under ' +
      '--omit=optional). For any other platform, build from source: in a checkout of the repository, with ' +
      'Rust installed (https://rustup.rs), run `npm install && npm run build`, then depend on that folder.',
  )
  error.code = 'ERR_NATIVE_ADDON'
  error.cause = cause
  throw error
}
// `EventBus` as the addon makes it, with OpenTelemetry wired in when the options or the
// service's registered providers ask for it (telemetry.js); otherwise the bus is the
// addon's own object, untouched.
const { attach } = require('./telemetry.js')
const NativeBus = binding.EventBus
class EventBus extends NativeBus {
  constructor(options) {
    super(options)
    attach(this, options)
  }

  static create(options) {
    return NativeBus.create(options).then((bus) => {
      // The addon makes the object; it becomes this class's, as `new` would make it.
      Object.setPrototypeOf(bus, EventBus.prototype)
      return attach(bus, options)
    })
  }
}
const { createDashboard } = require('./dashboard')
module.exports = { ...binding, EventBus, createDashboard }
