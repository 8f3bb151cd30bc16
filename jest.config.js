/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/__test__'],
  testMatch: ['**/*.test.ts'],
  testTimeout: 60000,
  // JetStream and Redis: the shared servers, or private ones started for the run.
  globalSetup: '<rootDir>/__test__/support/global-setup.js',
  globalTeardown: '<rootDir>/__test__/support/global-teardown.js',
  // ringbus's log records go to a sink; expected ones are asserted, others printed.
  setupFilesAfterEnv: ['<rootDir>/__test__/support/logs.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/__test__/tsconfig.json' }],
  },
}
