import { createClient } from '@redis/client';
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { errors } from 'oidc-provider';
import { accountFor, type AccountStore } from '../accounts.ts';
import type { Logger } from '../log.ts';
import { BINDING_LIMITS, FINISH_CLAIM_MS, retentionMs, type Binding, type SignInBindings } from '../sources/sign-in-bindings.ts';
import { entryTtlMs, GRANT_BOUND } from './models.ts';
import { StorageUnavailable, type RateCounter, type Store, type StoreOptions } from './store.ts';

// The store for more than one instance, in Redis (or Valkey): everything a login needs across
// requests, so any instance can take any step. Each value expires by its own TTL (Redis expiry).
// Only openStore (store.ts) imports this module, and only when the config names `storage:`: the
// bundle keeps it and the Redis client in a chunk of their own, which the memory store never loads.

const PREFIX = 'guestlist:';

async function connect(url: string, log: Logger) {
  let connected = false;
  const client = createClient({
    url,
    // While Redis is away, fail each command at once (a page says so) rather than queue it.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: 3000,
      // At start-up, give up after a few tries with a clear error; once running, keep trying.
      reconnectStrategy: (retries: number, cause: Error) => (!connected && retries >= 3 ? cause : Math.min(100 * 2 ** retries, 2000)),
    },
  });
  let down = false;
  client.on('error', (err: Error) => {
    if (!down) log('error', 'storage unreachable', { storage: redact(url), err: err.message });
    down = true;
  });
  client.on('ready', () => {
    if (down) log('info', 'storage reachable again', { storage: redact(url) });
    down = false;
  });
  try {
    await client.connect();
  } catch (err) {
    throw new StorageUnavailable(`cannot reach Redis at ${redact(url)}: ${(err as Error).message || (err as Error).name}`);
  }
  connected = true;
  return client;
}

/** The URL without its password, for logs and errors. */
function redact(url: string): string {
  const u = URL.parse(url);
  if (!u) return 'redis://(unparseable)';
  if (u.password) u.password = '***';
  return u.href;
}

// A Redis that is up but stalled would otherwise hold every request open.
const OPERATION_TIMEOUT_MS = 2000;

async function guard<T>(work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StorageUnavailable(`shared storage: no answer within ${OPERATION_TIMEOUT_MS} ms`)), OPERATION_TIMEOUT_MS);
  });
  try {
    return await Promise.race([work(), timeout]);
  } catch (err) {
    if (err instanceof errors.OIDCProviderError || err instanceof StorageUnavailable) throw err;
    throw new StorageUnavailable(`shared storage: ${(err as Error).message || (err as Error).name}`);
  } finally {
    clearTimeout(timer);
  }
}

const CLAIM_SCRIPT = `
local binding = redis.call('GET', KEYS[1])
if binding then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return binding
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'finishing' end
return false
`;

export async function openRedisStore(url: string, options: StoreOptions, log: Logger): Promise<Store> {
  const { groups, accountTtlSeconds, bindingLimits = BINDING_LIMITS, clockToleranceMs } = options;
  const client = await connect(url, log);
  const key = (model: string, id: string) => `${PREFIX}${model}:${id}`;

  function adapterFor(model: string): Adapter {
    // Unguarded, for the operations below that already run under one guard.
    const read = async (id: string) => {
      // The consumed mark lives beside the payload, so consuming is one atomic SET NX.
      const [json, consumed] = await client.mGet([key(model, id), `${key(model, id)}:consumed`]);
      if (!json) return undefined;
      const payload = JSON.parse(json) as AdapterPayload;
      if (consumed) payload.consumed = Number(consumed);
      return payload;
    };
    const find = (id: string) => guard(() => read(id));
    return {
      upsert: (id, payload, expiresIn) => guard(async () => {
        const ttl = entryTtlMs(expiresIn, clockToleranceMs);
        const tx = client.multi();
        tx.set(key(model, id), JSON.stringify(payload), ttl ? { PX: ttl } : {});
        if (model === 'Session' && payload.uid) tx.set(key('uid', payload.uid), id, ttl ? { PX: ttl } : {});
        if (GRANT_BOUND.has(model) && payload.grantId) {
          const members = key('grant', payload.grantId);
          tx.sAdd(members, key(model, id));
          if (ttl) tx.pExpire(members, ttl, 'GT');
          if (ttl) tx.pExpire(members, ttl, 'NX');
        }
        await tx.exec();
      }),
      find,
      findByUid: (uid) => guard(async () => {
        const id = await client.get(key('uid', uid));
        return id ? read(id) : undefined;
      }),
      findByUserCode: async () => undefined, // the device flow is not enabled
      consume: (id) => guard(async () => {
        const ttl = await client.pTTL(key(model, id));
        if (ttl === -2) return;
        const won = await client.set(`${key(model, id)}:consumed`, String(Math.floor(Date.now() / 1000)), { NX: true, ...(ttl > 0 ? { PX: ttl } : {}) });
        // Another instance (or request) consumed it first: no second token from one code.
        if (won === null) throw new errors.InvalidGrant('authorization code already consumed');
      }),
      destroy: (id) => guard(async () => {
        if (model === 'Session') {
          const payload = await read(id);
          if (payload?.uid) await client.del(key('uid', payload.uid));
        }
        await client.del([key(model, id), `${key(model, id)}:consumed`]);
      }),
      revokeByGrantId: (grantId) => guard(async () => {
        const members = await client.sMembers(key('grant', grantId));
        await client.del([...members, ...members.map((m) => `${m}:consumed`), key('grant', grantId)]);
      }),
    };
  }

  const accounts: AccountStore = {
    remember: (identity) => guard(async () => {
      const account = accountFor(identity, groups);
      await client.set(key('account', account.accountId), JSON.stringify(account), { EX: accountTtlSeconds });
      return account;
    }),
    find: (accountId) => guard(async () => {
      const json = await client.get(key('account', accountId));
      return json ? JSON.parse(json) : undefined;
    }),
  };

  const bindings: SignInBindings = {
    // The rules of sources/sign-in-bindings.ts, as the memory store keeps them: a reference binds
    // once while the upstream could still approve it, and a full memory (per network, or in all)
    // refuses new binds. Live binds are counted in sorted sets scored by expiry, so what has
    // expired drops out by itself.
    bind: (uid, binding, network) => guard(async () => {
      const now = Date.now();
      const ttl = retentionMs(binding.expiresAt, now);
      const mine = key('bindings-of', network);
      const all = key('bindings-of', '*all*');
      const bound = key('bound', binding.ref);
      const [, ofNetwork, , ofAll, taken] = await client.multi()
        .zRemRangeByScore(mine, '-inf', now).zCard(mine)
        .zRemRangeByScore(all, '-inf', now).zCard(all)
        .exists(bound)
        .exec() as unknown as [number, number, number, number, number];
      // A reference bound before is 'taken' whatever else is full, as in memory (the SET NX
      // below still decides between two binds racing for one reference).
      if (taken) return 'taken';
      if (ofNetwork >= bindingLimits.perNetwork) return 'network-full';
      if (ofAll >= bindingLimits.max) return 'full';
      // The network it counts against, for release().
      const fresh = await client.set(bound, network, { NX: true, PX: ttl });
      if (fresh === null) return 'taken';
      const member = { score: now + ttl, value: binding.ref };
      await client.multi()
        .zAdd(mine, member).pExpire(mine, ttl, 'NX').pExpire(mine, ttl, 'GT')
        .zAdd(all, member).pExpire(all, ttl, 'NX').pExpire(all, ttl, 'GT')
        .set(key('binding', uid), JSON.stringify(binding), { PX: ttl })
        .exec();
      return 'bound';
    }),
    peek: (uid) => guard(async () => {
      const [json, finishing] = await client.multi().get(key('binding', uid)).exists(key('finishing', uid)).exec() as unknown as [string | null, number];
      if (json) return JSON.parse(json) as Binding;
      return finishing ? 'finishing' : undefined;
    }),
    // Of two requests finishing one login, on any instances, one gets the binding; it moves to
    // a "finishing" key in the same step, so the other always sees one or the other.
    claim: (uid) => guard(async () => {
      const got = await client.eval(CLAIM_SCRIPT, { keys: [key('binding', uid), key('finishing', uid)], arguments: [String(FINISH_CLAIM_MS)] });
      if (got === 'finishing') return 'finishing';
      return typeof got === 'string' ? JSON.parse(got) as Binding : undefined;
    }),
    restore: (uid, binding) => guard(async () => void (await client.multi()
      .del(key('finishing', uid))
      .set(key('binding', uid), JSON.stringify(binding), { PX: retentionMs(binding.expiresAt) })
      .exec())),
    settle: (uid) => guard(async () => void (await client.del(key('finishing', uid)))),
    release: (uid, ref) => guard(async () => {
      const bound = key('bound', ref);
      const [network, json] = await client.mGet([bound, key('binding', uid)]);
      const multi = client.multi().del(bound).zRem(key('bindings-of', '*all*'), ref);
      if (network) multi.zRem(key('bindings-of', network), ref);
      if (json && (JSON.parse(json) as Binding).ref === ref) multi.del(key('binding', uid));
      await multi.exec();
    }),
  };

  const counter: RateCounter = {
    hit: (name, windowMs) => guard(async () => {
      const k = key('rate', name);
      const [count, , ttl] = await client.multi().incr(k).pExpire(k, windowMs, 'NX').pTTL(k).exec() as unknown as [number, number, number];
      return { count, resetAt: Date.now() + Math.max(ttl, 0) };
    }),
  };

  return { adapterFor, accounts, bindings, counter, close: async () => void (await client.close()) };
}
