// Preload (node --import) that makes servers which call listen(port) without a host bind to
// 127.0.0.1 instead of every interface. Used for third-party test servers such as
// @modelcontextprotocol/server-everything, whose listen call takes only a port.

import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(...args) {
  if ((typeof args[0] === 'number' || typeof args[0] === 'string') && /^\d+$/.test(String(args[0])) && typeof args[1] !== 'string') {
    args.splice(1, 0, '127.0.0.1');
  } else if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined && args[0].host === undefined && args[0].path === undefined) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
