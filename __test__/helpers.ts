import { EventBus, type BusEvent, type PollRequest } from '../index'

/** Reads every page from `request.cursor` on. */
export async function pollAll(bus: EventBus, request: PollRequest = {}): Promise<BusEvent[]> {
  const out: BusEvent[] = []
  let cursor = request.cursor
  for (;;) {
    const page = await bus.poll({ limit: 1000, ...request, cursor })
    out.push(...page.events)
    cursor = page.cursor
    if (!page.hasMore) return out
  }
}

/** The error a sync call throws (or fails the test). */
export function thrown(fn: () => unknown): { code?: string; message: string } {
  try {
    fn()
  } catch (e) {
    return e as { code?: string; message: string }
  }
  throw new Error('expected the call to throw')
}

export function expectInvariant(bus: EventBus): void {
  const s = bus.stats()
  expect(s.ingested).toBe(s.stored + s.dropped + s.pending)
}
