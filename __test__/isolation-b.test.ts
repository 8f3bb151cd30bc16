import { isolationSuite } from './support/isolation'

isolationSuite('b')
