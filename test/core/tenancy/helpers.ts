// Shared by the tenancy tests: request results, a tenant with an admin token, its connection.
import { SCOPES } from '../../../schemas/index.js';
import { connect, type RawConn, type TestGateway } from '../../helpers/gateway.js';

export const PLUGINS = new URL('../../../plugins/', import.meta.url).pathname;
export const CLI = { kind: 'cli', user: 'test' };

export type Frame = Record<string, unknown>;

/** A response's result; throws with the error when the request failed. */
export const ok = <T>(r: Frame): T => {
  if (r.ok !== true) throw new Error(`request failed: ${JSON.stringify(r.error ?? r)}`);
  return r.result as T;
};

/** A failed response's error code. */
export const code = (r: Frame): string | undefined => (r.error as { code?: string } | undefined)?.code;

/** Creates tenant `id` and an admin token of it (every scope). */
export async function createTenant(gw: TestGateway, id: string): Promise<{ token: string; tokenId: string }> {
  gw.store.tx(() => gw.store.tenants.insert({ id, label: `tenant ${id}`, created_at: Date.now() }));
  const { token, record } = await gw.tokens.create({ scopes: [...SCOPES], tenant: id, createdBy: 'cli', label: `${id} admin` });
  return { token, tokenId: record.id };
}

/** Creates tenant `id` and connects with an admin token of it. */
export async function tenantConn(gw: TestGateway, id: string): Promise<RawConn> {
  return (await connect(gw, { token: (await createTenant(gw, id)).token })).conn;
}
