#!/usr/bin/env node
'use strict'
// The `ringbus` command (see `ringbus --help`, and README "Operating").
// A reader that went away (`| head`) ends the output, not in an error.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0)
  throw e
})
require('../cli/main.js')
  .run(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code
  })
