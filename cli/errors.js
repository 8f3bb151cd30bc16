'use strict'
// Errors the command reports itself, with the same codes as the library's (README, "Errors").

class CliError extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

module.exports = { CliError }
