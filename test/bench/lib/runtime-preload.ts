// `node --import` preload for the benchmarks' own servers (bare, the floors): the held tick maps of
// every flashsale process (controller/runtime.ts), so a ceiling or floor cannot fall into V8's
// megamorphic nextTick and flatter a ratio. The V8 flags go on their command line (seckill.ts).
import { holdTickObjectMaps } from '../../../controller/runtime.ts';

holdTickObjectMaps();
