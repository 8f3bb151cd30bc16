import { EventBus } from '../../index'
import { pollAll } from '../helpers'

/** The body of each isolation-*.test.ts: Jest runs them in one invocation; none may see another's bus. */
export function isolationSuite(file: string): void {
  describe(`isolation (${file})`, () => {
    it('a fresh bus starts empty and sees only its own events', async () => {
      const bus = new EventBus({ shards: 2 })
      expect(bus.stats()).toMatchObject({ ingested: 0, stored: 0 })
      expect((await bus.poll()).events).toHaveLength(0)
      for (let i = 0; i < 500; i++) bus.ingest({ file, i })
      await bus.flush()
      const events = await pollAll(bus)
      expect(events).toHaveLength(500)
      expect(events.every((e) => JSON.parse(e.raw).file === file)).toBe(true)
      expect(bus.stats()).toMatchObject({ ingested: 500, stored: 500 })
      await bus.shutdown()
    })
  })
}
