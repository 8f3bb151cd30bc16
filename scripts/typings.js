// Runs after every `napi build`: gives a type parameter to each class and interface of the
// generated index.d.ts whose doc comment says `@typeParam T`. napi-rs generates every
// signature that uses `T` (ts_args_type, ts_return_type, ts_type, ts_generic_types), but it
// cannot declare a type parameter on a class or an interface (napi-rs/napi-rs#2716).
// The doc tag in the Rust source says which ones; `T` defaults to `unknown`.
'use strict'

const fs = require('node:fs')
const path = require('node:path')

const file = path.resolve(__dirname, '..', 'index.d.ts')
const text = fs.readFileSync(file, 'utf8')

// A doc comment (no nested `*/`) right before a declaration line.
const declaration = /(\/\*\*(?:(?!\*\/)[\s\S])*?@typeParam T\b(?:(?!\*\/)[\s\S])*?\*\/\n)(export (?:declare class|interface) \w+)(?:<T = unknown>)?( \{)/g
let count = 0
const out = text.replace(declaration, (_, doc, head, brace) => {
  count += 1
  return `${doc}${head}<T = unknown>${brace}`
})

// Every declaration that uses T must have been given it; tsc would also say so, later.
const tagged = (text.match(/@typeParam T\b/g) || []).length
if (count !== tagged) {
  throw new Error(`scripts/typings.js: ${tagged} declarations document @typeParam T, ${count} were given it`)
}
// The dashboard is plain JS with its own typings: re-exported from here.
const DASHBOARD = "export { createDashboard, type DashboardAction, type DashboardOptions } from './dashboard'\n"
const final = out.includes(DASHBOARD) ? out : `${out}${DASHBOARD}`
if (final !== text) fs.writeFileSync(file, final)
