/**
 * API keys kept in the database. A key is `iris-` + 32 random bytes in base64url, shown once when created;
 * the database holds only its SHA-256 (and a short prefix to recognise it in listings). A running gateway
 * keeps the active keys in memory, keyed by digest, and reloads them every few seconds, so a key created
 * or revoked with `iris keys` (from any machine sharing the database) takes effect without a restart.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { OperatorError } from '../errors.js';
import type { SqlDatabase, SqlValue } from './database.js';

/** Per-key limits; absent means unlimited. */
export interface KeyLimits {
  /** Requests per minute. */
  rpm?: number;
  /** Tokens per minute: prompt tokens (images included) + completion tokens. */
  tpm?: number;
  /** Requests in flight at once. */
  concurrency?: number;
}

/** A key as stored (never its secret). */
export interface ApiKeyRecord {
  id: string;
  name: string;
  /** Hex SHA-256 of the secret. */
  keyHash: string;
  /** The first characters of the secret, for listings (`iris-AbCd`). */
  prefix: string;
  admin: boolean;
  limits: KeyLimits;
  /** Model ids this key may use; undefined for all. */
  models?: readonly string[];
  /** Milliseconds since the epoch. */
  expiresAt?: number;
  createdAt: number;
  lastUsedAt?: number;
  revokedAt?: number;
}

/** What `iris keys create` asks for. */
export interface NewKey {
  name: string;
  admin?: boolean;
  limits?: KeyLimits;
  models?: readonly string[];
  expiresAt?: number;
}

/** A key operation that cannot be done (duplicate name, unknown key): the CLI prints it as one line. */
export class KeyStoreError extends OperatorError {}

/** Hex SHA-256 of a key's secret: how the database and the in-memory directory know it. */
export function keyDigest(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

interface KeyRow {
  id: string;
  name: string;
  key_hash: string;
  prefix: string;
  admin: number;
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
  models: string | null;
  expires_at: number | null;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

const KEY_COLUMNS = 'id, name, key_hash, prefix, admin, rpm, tpm, concurrency, models, expires_at, created_at, last_used_at, revoked_at';

function toRecord(row: KeyRow): ApiKeyRecord {
  const limits: KeyLimits = {};
  if (row.rpm !== null) limits.rpm = Number(row.rpm);
  if (row.tpm !== null) limits.tpm = Number(row.tpm);
  if (row.concurrency !== null) limits.concurrency = Number(row.concurrency);
  return {
    id: row.id,
    name: row.name,
    keyHash: row.key_hash,
    prefix: row.prefix,
    admin: Number(row.admin) === 1,
    limits,
    ...(row.models === null ? {} : { models: JSON.parse(row.models) as string[] }),
    ...(row.expires_at === null ? {} : { expiresAt: Number(row.expires_at) }),
    createdAt: Number(row.created_at),
    ...(row.last_used_at === null ? {} : { lastUsedAt: Number(row.last_used_at) }),
    ...(row.revoked_at === null ? {} : { revokedAt: Number(row.revoked_at) }),
  };
}

/** Keys in the database. */
export class ApiKeyStore {
  #db: SqlDatabase;
  #now: () => number;

  constructor(db: SqlDatabase, now: () => number = Date.now) {
    this.#db = db;
    this.#now = now;
  }

  /** Creates a key and resolves with its record and its secret (the only time the secret exists). */
  async create(key: NewKey): Promise<{ record: ApiKeyRecord; secret: string }> {
    const secret = `iris-${randomBytes(32).toString('base64url')}`;
    const id = `key_${randomUUID().replace(/-/g, '')}`;
    const limits = key.limits ?? {};
    const values: SqlValue[] = [
      id,
      key.name,
      keyDigest(secret),
      secret.slice(0, 9),
      key.admin ? 1 : 0,
      limits.rpm ?? null,
      limits.tpm ?? null,
      limits.concurrency ?? null,
      key.models === undefined ? null : JSON.stringify(key.models),
      key.expiresAt ?? null,
      this.#now(),
    ];
    await this.#db.transaction(async (tx) => {
      const taken = await tx.query('SELECT id FROM api_keys WHERE name = $1 AND revoked_at IS NULL', [key.name]);
      if (taken.length > 0) throw new KeyStoreError(`A key named '${key.name}' exists already; revoke it first or pick another name.`);
      await tx.execute(
        `INSERT INTO api_keys (id, name, key_hash, prefix, admin, rpm, tpm, concurrency, models, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        values,
      );
    });
    const [row] = await this.#db.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = $1`, [id]);
    if (!row) throw new KeyStoreError(`The key '${key.name}' vanished right after it was created.`);
    return { record: toRecord(row), secret };
  }

  /** Every key, revoked ones included when asked, oldest first. */
  async list(options: { includeRevoked?: boolean } = {}): Promise<ApiKeyRecord[]> {
    const rows = await this.#db.query<KeyRow>(
      `SELECT ${KEY_COLUMNS} FROM api_keys${options.includeRevoked ? '' : ' WHERE revoked_at IS NULL'} ORDER BY created_at, name`,
    );
    return rows.map(toRecord);
  }

  /** Revokes the active key with this name; rejects when there is none. */
  async revoke(name: string): Promise<void> {
    const changed = await this.#db.execute('UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL', [this.#now(), name]);
    if (changed === 0) throw new KeyStoreError(`No active key is named '${name}'.`);
  }
}

/**
 * The active keys of a running gateway, in memory by digest, reloaded from the database every
 * `refreshMs`. Looking a key up costs a hash and a map access: no database round trip per request.
 */
export class KeyDirectory {
  #store: ApiKeyStore;
  #byDigest = new Map<string, ApiKeyRecord>();
  #timer: NodeJS.Timeout | undefined;
  #onError: (error: unknown) => void;

  constructor(store: ApiKeyStore, options: { refreshMs: number; onError: (error: unknown) => void }) {
    this.#store = store;
    this.#onError = options.onError;
    this.#timer = setInterval(() => void this.refresh().catch(this.#onError), options.refreshMs);
    this.#timer.unref();
  }

  /** Reloads the active keys now. */
  async refresh(): Promise<void> {
    const keys = await this.#store.list();
    this.#byDigest = new Map(keys.map((key) => [key.keyHash, key]));
  }

  /** Whether any key is active (an empty directory leaves auth to the configured keys). */
  get size(): number {
    return this.#byDigest.size;
  }

  /** The active key whose secret has this hex digest. */
  find(digest: string): ApiKeyRecord | undefined {
    return this.#byDigest.get(digest);
  }

  dispose(): void {
    clearInterval(this.#timer);
  }
}
