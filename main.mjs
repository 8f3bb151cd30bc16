// The ESM entry: the CommonJS entry's exports, by name (scripts/check-package.sh checks
// that this list matches them).
import { createRequire } from 'node:module'

const binding = createRequire(import.meta.url)('./main.js')

export const { BackpressureMode, Consumer, ErrorCode, EventBus, StorageMode, Subscription, Worker, createDashboard, metricsContentType, setLogger } = binding
export default binding
