/**
 * The shared edge check (GatewayServer: WebSocket upgrade and POST /mcp): the Bearer scheme name
 * is case-insensitive (RFC 7235), and a refused /mcp request does not hold its connection open
 * while a large declared body drains.
 */
import t from 'tap';
import net from 'node:net';
import { startTestGateway, removeHome, open, RawConn, tokenSecret } from '../../helpers/gateway.js';

const INIT = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });

t.test('the Bearer scheme is case-insensitive on the upgrade and on /mcp', async (t) => {
  const gw = await startTestGateway();
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
    const r = await open(gw, { token: null, headers: { authorization: `${scheme} ${gw.adminToken}` } });
    t.ok(r instanceof RawConn, `upgrade with "${scheme}" accepted (${r instanceof RawConn ? 101 : (r as { status: number }).status})`);
    if (r instanceof RawConn) r.ws.close();
    const res = await fetch(`http://127.0.0.1:${gw.port}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `${scheme} ${gw.adminToken}` },
      body: INIT,
    });
    t.equal(res.status, 200, `/mcp with "${scheme}" accepted`);
    await res.text();
  }
  // Only the scheme name is case-insensitive: the token itself is not.
  const id = /^tyrum_([0-9a-f]{16})_/.exec(gw.adminToken)![1]!;
  const upper = `tyrum_${id}_${tokenSecret(gw.adminToken).toUpperCase()}`;
  if (upper !== gw.adminToken) t.equal(((await open(gw, { token: upper })) as { status: number }).status, 401, 'a token with its case changed is refused');
  t.equal(((await open(gw, { token: null, headers: { authorization: `Basic ${gw.adminToken}` } })) as { status: number }).status, 401, 'another scheme is refused');
});

/** Sends headers declaring a large body plus a little of it; resolves with what came back and whether the server closed the socket. */
function bigDeclaredBody(port: number, authorization: string | null, guardMs: number): Promise<{ response: string; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let response = '';
    let done = false;
    const finish = (closedByServer: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      s.destroy();
      resolve({ response, closedByServer });
    };
    const guard = setTimeout(() => finish(false), guardMs);
    s.setEncoding('utf8');
    s.on('connect', () => {
      s.write(
        'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n' +
          (authorization === null ? '' : `Authorization: ${authorization}\r\n`) +
          `Content-Length: ${50 * 1024 * 1024}\r\n\r\n`,
      );
      s.write('{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"pad":"' + 'x'.repeat(16 * 1024));
    });
    s.on('data', (d: string) => (response += d));
    s.on('end', () => finish(true));
    s.on('close', () => finish(true));
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? finish(true) : reject(e)));
  });
}

t.test('an unauthenticated /mcp request with a large declared body gets 401 and its connection closed', async (t) => {
  // Long HTTP timeouts, so only an explicit close (not the idle keep-alive or request timeout)
  // can end the connection within the guard.
  const gw = await startTestGateway({ config: { limits: { http_keep_alive_timeout_ms: 60_000, http_request_timeout_ms: 60_000 } } });
  t.teardown(async () => {
    await gw.close();
    removeHome(gw.home);
  });
  for (const auth of [null, 'Bearer tyrum_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA']) {
    const r = await bigDeclaredBody(gw.port, auth, 8000);
    t.match(r.response, /^HTTP\/1\.1 401 /, `401 for ${auth === null ? 'no token' : 'a bad token'}`);
    t.match(r.response, /\r\nconnection: close\r\n/i, 'the response says Connection: close');
    t.ok(r.closedByServer, 'the server closed the socket instead of waiting for 50 MB');
  }
  const foreign = await new Promise<{ response: string; closedByServer: boolean }>((resolve) => {
    const s = net.connect(gw.port, '127.0.0.1');
    let response = '';
    const guard = setTimeout(() => {
      s.destroy();
      resolve({ response, closedByServer: false });
    }, 8000);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nAuthorization: Bearer ${gw.adminToken}\r\nContent-Type: application/json\r\nContent-Length: ${50 * 1024 * 1024}\r\n\r\n{"a":"`));
    s.on('data', (d: string) => (response += d));
    s.on('close', () => {
      clearTimeout(guard);
      resolve({ response, closedByServer: true });
    });
    s.on('error', () => undefined);
  });
  t.match(foreign.response, /^HTTP\/1\.1 403 /, 'a foreign Origin gets 403');
  t.ok(foreign.closedByServer, 'and its connection is closed too');
  const ok = await fetch(`http://127.0.0.1:${gw.port}/healthz`);
  t.equal(ok.status, 200, 'the gateway keeps serving');
});
