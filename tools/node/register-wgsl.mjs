// `node --import ./tools/node/register-wgsl.mjs` installs the ?raw WGSL hooks.
import { register } from 'node:module';

register('./wgsl-hooks.mjs', import.meta.url);
