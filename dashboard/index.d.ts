// Typings of the dashboard (plain JS); index.d.ts re-exports them (scripts/typings.js).
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { EventBus } from '../index'

/** What a request to the dashboard wants to do. */
export type DashboardAction = 'read' | 'reset' | 'redeliver' | 'purge'

export interface DashboardOptions {
  /** The bus whose store the page shows. The dashboard never joins a group. */
  bus: EventBus<any>
  /** Refuse every write with 403 and show no write buttons. Default: false. */
  readOnly?: boolean
  /**
   * Asked for every request: return false (or a promise of false) to refuse it with 403.
   * Write buttons the page may not use are hidden. Default: everything allowed.
   */
  authorize?: (req: IncomingMessage, action: DashboardAction) => boolean | Promise<boolean>
  /** HTTP Basic authentication: with both, a missing or wrong pair gets 401. Default: none. */
  user?: string
  password?: string
  /** Shown in the page's header (the stream, say). Default: none. */
  title?: string
  /** Past these the overview highlights a group. Default: `{ lag: 10000, lagAgeMs: 60000 }`. */
  thresholds?: { lag?: number; lagAgeMs?: number }
}

/**
 * The dashboard as a `(req, res)` handler for `http.createServer`, or mounted under a path
 * in Express or Fastify (serve it with a trailing slash: `/ringbus/`). Every asset ships
 * in the package. Throws `ERR_INVALID_CONFIG` for bad options.
 */
export declare function createDashboard(options: DashboardOptions): (req: IncomingMessage, res: ServerResponse) => void
