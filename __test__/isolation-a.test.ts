import { EventBus } from '../index'
import { pollAll } from './helpers'

// Three files like this run in one Jest invocation; each must see only its own bus.
describe('isolation (a)', () => {
  it('a fresh bus starts empty and sees only its own events', async () => {
    const bus = new EventBus({ shards: 2 })
    expect(bus.stats()).toMatchObject({ ingested: 0, stored: 0 })
    expect((await bus.poll()).events).toHaveLength(0)
    for (let i = 0; i < 500; i++) bus.ingest({ file: 'a', i })
    await bus.flush()
    const events = await pollAll(bus)
    expect(events).toHaveLength(500)
    expect(events.every((e) => JSON.parse(e.raw).file === 'a')).toBe(true)
    expect(bus.stats()).toMatchObject({ ingested: 500, stored: 500 })
    await bus.shutdown()
  })
})
