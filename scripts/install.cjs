// npm "install" step of gradzip: node-gyp-build (a prebuild from prebuilds/ that loads, else a node-gyp
// compile), with two defaults so that a compile needs no network: when the running node ships its own headers
// (Debian's /usr/include/node, nvm and the official tarballs' <prefix>/include/node) node-gyp uses them instead of
// downloading a header tarball from nodejs.org, and it compiles with 2 jobs. Both can be overridden with
// npm_config_nodedir / npm_config_jobs.
'use strict';
const fs = require('fs');
const path = require('path');

if (!process.env.npm_config_nodedir) {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const inc = path.join(prefix, 'include', 'node');
  if (fs.existsSync(path.join(inc, 'node_api.h')) && fs.existsSync(path.join(inc, 'common.gypi'))) {
    process.env.npm_config_nodedir = prefix;
  }
}
if (!process.env.npm_config_jobs) process.env.npm_config_jobs = '2';
require('node-gyp-build/bin.js');
