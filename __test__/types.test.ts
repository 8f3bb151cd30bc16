import { spawnSync } from 'node:child_process'
import path from 'node:path'

describe('typings', () => {
  it('a TypeScript usage file type-checks against index.d.ts', () => {
    const tsc = require.resolve('typescript/bin/tsc')
    const project = path.join(__dirname, 'typecheck', 'tsconfig.json')
    const r = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8' })
    // Also fails when a @ts-expect-error line stops being an error.
    expect(r.stdout + r.stderr).toBe('')
    expect(r.status).toBe(0)
  })
})
