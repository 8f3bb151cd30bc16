import { isolationSuite } from './support/isolation'

isolationSuite('c')
