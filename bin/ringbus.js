#!/usr/bin/env node
'use strict'
// The `ringbus` command (see `ringbus --help`, and README "Operating").
require('../cli/main.js')
  .run(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code
  })
