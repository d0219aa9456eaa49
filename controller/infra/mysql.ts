// MySQL (MariaDB) connections and the versioned schema the project owns.
import mysql from 'mysql2/promise';
import type { Pool, PoolConnection } from 'mysql2/promise';
import type { MysqlConfig } from '../config.ts';

export type { Pool, PoolConnection };

/** Versioned migrations, applied in order, each once; never edit one that has shipped, add the next. */
export const migrations: { version: number; name: string; statements: string[] }[] = [
  {
    version: 1,
    name: 'orders',
    statements: [
      `CREATE TABLE orders (
        order_id    CHAR(36)     CHARACTER SET ascii NOT NULL,
        sale        VARCHAR(128) NOT NULL,
        sku_id      VARCHAR(64)  NOT NULL,
        user_id     VARCHAR(128) NOT NULL,
        quantity    INT UNSIGNED NOT NULL,
        status      ENUM('UNPAID','PAID','CLOSED') NOT NULL DEFAULT 'UNPAID',
        created_at  DATETIME(3)  NOT NULL,
        due_at      DATETIME(3)  NOT NULL,
        paid_at     DATETIME(3)  NULL,
        closed_at   DATETIME(3)  NULL,
        PRIMARY KEY (order_id),
        KEY orders_status_due (status, due_at),
        KEY orders_sale_sku_status (sale, sku_id, status)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    ],
  },
  {
    version: 2,
    name: 'stock_releases',
    statements: [
      // Written in the same transaction that closes the order; applied_at is set once Redis has the units back.
      `CREATE TABLE stock_releases (
        order_id    CHAR(36)     CHARACTER SET ascii NOT NULL,
        sale        VARCHAR(128) NOT NULL,
        sku_id      VARCHAR(64)  NOT NULL,
        user_id     VARCHAR(128) NOT NULL,
        quantity    INT UNSIGNED NOT NULL,
        created_at  DATETIME(3)  NOT NULL,
        applied_at  DATETIME(3)  NULL,
        PRIMARY KEY (order_id),
        KEY stock_releases_pending (applied_at, created_at)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    ],
  },
  {
    version: 3,
    name: 'binary_ids',
    // Ids are compared byte for byte everywhere else (Redis, Kafka keys, JavaScript Maps): 'u-1',
    // 'U-1', 'u-1 ' and 'ü-1' are four users. The default collation (utf8mb4_general_ci) merged them
    // (case, accents, and trailing spaces under PAD SPACE), e.g. in the rebuild ledger's GROUP BY
    // user_id. utf8mb4_nopad_bin is binary and keeps trailing spaces significant.
    statements: [
      `ALTER TABLE orders
        MODIFY sale    VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
        MODIFY sku_id  VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
        MODIFY user_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL`,
      `ALTER TABLE stock_releases
        MODIFY sale    VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
        MODIFY sku_id  VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
        MODIFY user_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL`,
    ],
  },
  {
    version: 4,
    name: 'sku_marks',
    // The highest value of each SKU's Redis counter (names.ts `seq`) a worker saw; Redis restored from
    // an older snapshot shows a lower one (see dataplane/restore-fence.ts).
    statements: [
      `CREATE TABLE sku_marks (
        sale        VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
        sku_id      VARCHAR(64)  CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
        seq         BIGINT UNSIGNED NOT NULL,
        updated_at  DATETIME(3)  NOT NULL,
        PRIMARY KEY (sale, sku_id)
      ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
    ],
  },
  {
    version: 5,
    name: 'orders_sale_sku',
    // Every pay and every close changes an order's status, and each secondary index holding status
    // is rewritten with it (an entry delete-marked, one inserted): about 8 µs of MariaDB CPU per
    // index and order, measured. (status, due_at) is what the compensation scan walks; status in
    // (sale, sku_id, status) only spared the rare rebuild ledger and the operator's sold count some
    // row reads, so it goes. IF [NOT] EXISTS: a retry after a crash mid-migration must not fail.
    statements: [
      `ALTER TABLE orders
        ADD KEY IF NOT EXISTS orders_sale_sku (sale, sku_id),
        DROP KEY IF EXISTS orders_sale_sku_status,
        ALGORITHM=INPLACE, LOCK=NONE`,
    ],
  },
  {
    version: 6,
    name: 'redundant_rows',
    // A close sets closed_at, a pay paid_at, the release mark applied_at: each from NULL to a value.
    // In the COMPACT and DYNAMIC row formats a NULL takes no bytes, so that update grows the record
    // and InnoDB deletes and re-inserts the record in its page. REDUNDANT reserves a fixed-length
    // column's bytes even when it is NULL, so the same update is written in place.
    // Measured (100,000 rows, chunks of 500, client + MariaDB CPU, two alternated runs): the close
    // transaction 31-34 -> 23-24 us per order, the applied mark 18-20 -> 9-10 us, the order INSERT
    // unchanged. The columns and their meaning stay; the table grows (100,000 orders rebuilt: data
    // 14.2 -> 16.3 MB, indexes 13.7 -> 14.8 MB). Both ALTERs are online rebuilds, and a rerun is harmless.
    statements: [
      'ALTER TABLE orders ROW_FORMAT=REDUNDANT, ALGORITHM=INPLACE, LOCK=NONE',
      'ALTER TABLE stock_releases ROW_FORMAT=REDUNDANT, ALGORITHM=INPLACE, LOCK=NONE',
    ],
  },
  {
    version: 7,
    name: 'settled_orders',
    // What the compensation scan looks for, an order still open (UNPAID) or closed with its stock
    // release owed, is kept on the order row: settled_at is NULL until the order owes nothing (paid,
    // or its units confirmed back in Redis), and the scan walks (settled_at, due_at) from NULL. Until
    // now a close INSERTed a stock_releases record in its transaction and changed status, which sat
    // in the (status, due_at) index: the close rewrote that index entry and inserted a record and its
    // index entries. Now it changes only status and closed_at, in no secondary index, and reads the
    // closed rows back for their releases; the pay and the release mark set settled_at (one index
    // entry rewritten, as the pay did before; the mark after a burst). Measured (scratch tables,
    // 100,000 orders, chunks of 500, client + MariaDB CPU per close, alternated runs): 17.5-20.1 us
    // with the record, 12.9-16.3 with status in the index and the read back, 9.3-12.1 so.
    // stock_releases is no longer written; it stays for a previous release's closer during a rollout
    // (docs/install.md). IF [NOT] EXISTS: a retry after a crash mid-migration must not fail.
    statements: [
      `ALTER TABLE orders
        ADD COLUMN IF NOT EXISTS settled_at DATETIME(3) NULL AFTER closed_at,
        ADD KEY IF NOT EXISTS orders_settled_due (settled_at, due_at),
        DROP KEY IF EXISTS orders_status_due,
        ALGORITHM=INPLACE, LOCK=NONE`,
      // Settled: paid orders; closes whose release was applied; rows the order writer wrote CLOSED
      // because the reaper had returned the units (no record). A pending record leaves NULL: owed.
      `UPDATE orders o LEFT JOIN stock_releases r ON r.order_id = o.order_id
        SET o.settled_at = CASE WHEN o.status = 'PAID' THEN COALESCE(o.paid_at, o.created_at) ELSE COALESCE(r.applied_at, o.closed_at, o.created_at) END
        WHERE o.settled_at IS NULL AND (o.status = 'PAID' OR (o.status = 'CLOSED' AND (r.order_id IS NULL OR r.applied_at IS NOT NULL)))`,
    ],
  },
];

const MYSQL_CONNECT_TIMEOUT_MS = 20_000;

export function createPool(cfg: MysqlConfig, options: { connectionLimit?: number } = {}): Pool {
  return mysql.createPool({
    host: cfg.host,
    port: cfg.port,
    user: cfg.user,
    password: cfg.password,
    database: cfg.database,
    connectionLimit: options.connectionLimit ?? 10,
    // All times are stored and read as UTC.
    timezone: 'Z',
    dateStrings: false,
    supportBigNumbers: true,
    // A busy MariaDB can take seconds to accept a connection; a short bound made workers fail at start.
    connectTimeout: MYSQL_CONNECT_TIMEOUT_MS,
    enableKeepAlive: true,
  });
}

/**
 * Creates the database if needed and applies pending migrations under a named lock, up to `through`
 * (all of them unless a test builds the schema an older release shipped). Returns the versions applied now.
 */
export async function migrate(cfg: MysqlConfig, through = Infinity): Promise<number[]> {
  const admin = await mysql.createConnection({ host: cfg.host, port: cfg.port, user: cfg.user, password: cfg.password, connectTimeout: MYSQL_CONNECT_TIMEOUT_MS });
  try {
    await admin.query(`CREATE DATABASE IF NOT EXISTS \`${cfg.database}\` CHARACTER SET utf8mb4`);
    await admin.query(`USE \`${cfg.database}\``);
    // Several replicas may start at once; the lock makes the migration run once.
    const [lockRows] = await admin.query('SELECT GET_LOCK(?, 30) AS ok', [`flashsale-migrate-${cfg.database}`]);
    if ((lockRows as { ok: number }[])[0]?.ok !== 1) throw new Error('could not take the migration lock within 30s');
    try {
      await admin.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version INT NOT NULL PRIMARY KEY, name VARCHAR(128) NOT NULL, applied_at DATETIME(3) NOT NULL)`);
      const [rows] = await admin.query('SELECT version FROM schema_migrations');
      const done = new Set((rows as { version: number }[]).map((r) => r.version));
      const applied: number[] = [];
      for (const m of migrations) {
        if (done.has(m.version) || m.version > through) continue;
        for (const sql of m.statements) await admin.query(sql);
        await admin.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, UTC_TIMESTAMP(3))', [m.version, m.name]);
        applied.push(m.version);
      }
      return applied;
    } finally {
      await admin.query('SELECT RELEASE_LOCK(?)', [`flashsale-migrate-${cfg.database}`]);
    }
  } finally {
    await admin.end();
  }
}

/** Highest applied migration version, or 0 when the schema is absent. */
export async function schemaVersion(pool: Pool): Promise<number> {
  try {
    const [rows] = await pool.query('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations');
    return Number((rows as { v: number }[])[0]?.v ?? 0);
  } catch (err) {
    if ((err as { code?: string }).code === 'ER_NO_SUCH_TABLE') return 0;
    throw err;
  }
}

export const latestSchemaVersion = Math.max(...migrations.map((m) => m.version));
