import { isolationSuite } from './support/isolation'

isolationSuite('a')
