-- The scale data set, built straight into a migrated loyalty database by bench/scale/run.py.
--
-- run.py creates the schema scale_build and its one-row parameter table scale_build.p first
-- (t0, the history's start, the worker's pause, the targets), then runs the steps below in
-- order, each in its own transaction, and times each one. Every step reads its parameters
-- from scale_build.p, so the file holds no placeholders.
--
-- The model: every member earns lots (orders, 2% hand adjustments) at random times over two
-- years. A lot's life is written exactly as loyalty's services write it:
--   earn     issued    -> pending    order:<order_id>      (qualifying = points)
--   adjust   adjusted  -> available  adjustment            (no return window)
--   reverse  pending   -> issued     refund:<refund_id>    (3% of orders, in the window)
--   mature   pending   -> available  lot:<id>              (14 days after the earn)
--   hold     available -> held       redemption:<uuid>     (25% of lots; half of them all of it)
--   capture  held      -> redeemed   redemption:<uuid>     (30 s after the hold)
--   expire   available -> expired    lot:<id>              (12 months after the earn)
-- A lot spent to 0 stays 'available' with remaining 0, as debit() leaves it.
--
-- Due lots: the worker stopped `pause_days` ago (w). Members chosen at random who have not
-- been read or written since w (no write after w, nothing settled after w) keep their
-- maturings and expiries after w unposted; the choice stops when they hold `due_lots` such
-- lots. Everybody else was settled up to t0. member_balances.next_due_at is computed as
-- ledger._next_due computes it, so exactly those members are due.

-- step: plan lots
CREATE UNLOGGED TABLE scale_build.draw (
    member_id bigint NOT NULL,
    ord float8 NOT NULL,          -- a random key: which lots the trim to --entries keeps
    kind text NOT NULL,           -- earn | adjust
    earned_at timestamptz NOT NULL,
    points int NOT NULL,
    rev int NOT NULL,             -- points a refund reverses (0: none)
    u_rev_at float8 NOT NULL,
    wants_redeem bool NOT NULL,
    full_redeem bool NOT NULL,
    u_when float8 NOT NULL,
    u_frac float8 NOT NULL
);
-- Ordinary members: an exponential number of lots, in proportion to how long they have
-- been members, at uniform times since they enrolled.
INSERT INTO scale_build.draw
SELECT member_id, ord, CASE WHEN u_kind < 0.02 THEN 'adjust' ELSE 'earn' END, earned_at, points,
       CASE WHEN u_kind >= 0.02 AND u_rev < 0.03
            THEN greatest(1, floor(points * 0.8 * u_rev_amount))::int ELSE 0 END,
       u_rev_at, u_redeem < 0.25, u_full < 0.5, u_when, u_frac
FROM (
    SELECT m.id AS member_id, random() AS ord, random() AS u_kind,
           m.enrolled_at + (p.t0 - m.enrolled_at) * random() AS earned_at,
           50 + floor(random() * 350)::int AS points,
           random() AS u_rev, random() AS u_rev_amount, random() AS u_rev_at,
           random() AS u_redeem, random() AS u_full, random() AS u_when, random() AS u_frac
    FROM members m
    CROSS JOIN scale_build.p p
    CROSS JOIN LATERAL generate_series(
        1,
        floor(-ln(1 - random()) * p.lots_per_member
              * extract(epoch FROM p.t0 - m.enrolled_at) / extract(epoch FROM p.t0 - p.start_at)
              * 2 + 0.5)::int
    ) AS g
    WHERE m.id > 2
) AS r;
-- The heavy member (id 2): the same kind of lots, many more of them over the two years.
INSERT INTO scale_build.draw
SELECT 2, ord, CASE WHEN u_kind < 0.02 THEN 'adjust' ELSE 'earn' END, earned_at, points,
       CASE WHEN u_kind >= 0.02 AND u_rev < 0.03
            THEN greatest(1, floor(points * 0.8 * u_rev_amount))::int ELSE 0 END,
       u_rev_at, u_redeem < 0.25, u_full < 0.5, u_when, u_frac
FROM (
    SELECT random() AS ord, random() AS u_kind,
           p.start_at + (p.t0 - p.start_at) * random() AS earned_at,
           50 + floor(random() * 350)::int AS points,
           random() AS u_rev, random() AS u_rev_amount, random() AS u_rev_at,
           random() AS u_redeem, random() AS u_full, random() AS u_when, random() AS u_frac
    FROM scale_build.p p CROSS JOIN LATERAL generate_series(1, p.heavy_lots) AS g
) AS r;
-- The light member (id 1): exactly 10 entries. An order 340 days ago (earn + mature, its
-- points expire within 30 days), one 60 days ago (earn + mature), an adjustment 20 days ago.
INSERT INTO scale_build.draw
SELECT 1, 0, kind, p.t0 - ago, points, 0, 0, false, false, 0, 0
FROM scale_build.p p
CROSS JOIN (VALUES ('earn', interval '340 days', 250), ('earn', interval '60 days', 120),
                   ('adjust', interval '20 days', 50)) AS v (kind, ago, points);

-- step: choose the due members
-- What each member would have due now had nothing been settled since w: lots earned before
-- w that mature after it, and lots whose expiry falls in (w, t0] that were not spent to 0
-- (a lot that expires after w had all of its redemption window before w).
CREATE UNLOGGED TABLE scale_build.due AS
SELECT member_id, n
FROM (
    SELECT member_id, n, sum(n) OVER (ORDER BY md5(member_id::text), member_id) AS upto
    FROM (
        SELECT d.member_id, count(*) AS n
        FROM scale_build.draw d CROSS JOIN scale_build.p p
        WHERE d.member_id > 2
          AND d.earned_at < p.w
          AND ((d.kind = 'earn' AND d.earned_at + p.pending > p.w)
               OR (d.earned_at + p.expiry > p.w AND d.earned_at + p.expiry <= p.t0
                   AND NOT (d.wants_redeem AND d.full_redeem)))
        GROUP BY d.member_id
    ) AS c
) AS s, scale_build.p p
WHERE upto <= p.due_lots;
ALTER TABLE scale_build.due ADD PRIMARY KEY (member_id);

-- step: lives of the lots
-- h: until when the member was written and settled (w for the due members, t0 otherwise).
-- A due member did nothing after w, so their draws after w never happened.
CREATE UNLOGGED TABLE scale_build.life AS
WITH base AS (
    SELECT d.*, h,
           d.earned_at + CASE d.kind WHEN 'earn' THEN p.pending ELSE interval '0' END AS avail_at,
           d.earned_at + p.expiry AS exp_at,
           d.earned_at + interval '10 days' * d.u_rev_at AS rev_at
    FROM scale_build.draw d
    CROSS JOIN scale_build.p p
    LEFT JOIN scale_build.due u ON u.member_id = d.member_id
    CROSS JOIN LATERAL (SELECT CASE WHEN u.member_id IS NULL THEN p.t0 ELSE p.w END AS h) AS hh
    WHERE d.earned_at < h
), step1 AS (
    SELECT b.*,
           CASE WHEN b.rev > 0 AND b.rev_at <= b.h THEN b.rev ELSE 0 END AS rev_x,
           b.kind = 'earn' AND b.avail_at <= b.h AS matured,
           least(b.exp_at, b.h) - interval '2 minutes' AS redeem_by
    FROM base b
), step2 AS (
    SELECT s.*,
           s.wants_redeem AND s.redeem_by > s.avail_at AS redeemed,
           s.points - s.rev_x AS base_points
    FROM step1 s
), step3 AS (
    SELECT s.*,
           CASE WHEN NOT s.redeemed THEN 0
                WHEN s.full_redeem THEN s.base_points
                ELSE greatest(1, floor(s.base_points * (0.2 + 0.6 * s.u_frac)))::int END AS spent,
           CASE WHEN s.redeemed THEN s.avail_at + (s.redeem_by - s.avail_at) * s.u_when END AS hold_at
    FROM step2 s
)
SELECT s.*,
       (s.kind = 'adjust' OR s.matured) AND s.exp_at <= s.h AND s.base_points - s.spent > 0
           AS expired,
       2 + 2 * (s.rev_x > 0)::int + 2 * s.matured::int + 4 * s.redeemed::int
         + 2 * ((s.kind = 'adjust' OR s.matured) AND s.exp_at <= s.h
                AND s.base_points - s.spent > 0)::int AS entries
FROM step3 s;

-- step: trim to the entry target
-- Keeps every lot of the due members and of the light member, the heavy member's lots up to
-- heavy_entries entries, and ordinary members' lots (in random order) up to what is left of
-- the target. Lot ids follow time, as the app assigns them.
CREATE UNLOGGED TABLE scale_build.lot AS
WITH totals AS (
    SELECT coalesce(sum(l.entries) FILTER (WHERE l.member_id = 1 OR u.member_id IS NOT NULL), 0)
               AS fixed
    FROM scale_build.life l LEFT JOIN scale_build.due u ON u.member_id = l.member_id
), ranked AS (
    SELECT l.*, (u.member_id IS NOT NULL) AS due,
           sum(l.entries) OVER (PARTITION BY (l.member_id = 2), (u.member_id IS NOT NULL OR l.member_id = 1)
                                ORDER BY l.ord, l.member_id, l.earned_at) AS upto
    FROM scale_build.life l LEFT JOIN scale_build.due u ON u.member_id = l.member_id
)
SELECT row_number() OVER (ORDER BY r.earned_at, r.member_id, r.ord) AS lot_id, r.*,
       r.base_points - r.spent AS left_points
FROM ranked r CROSS JOIN scale_build.p p CROSS JOIN totals t
WHERE r.due OR r.member_id = 1
   OR (r.member_id = 2 AND r.upto <= p.heavy_entries)
   OR (r.member_id > 2 AND r.upto <= p.entries - t.fixed - p.heavy_entries);
ALTER TABLE scale_build.lot ADD PRIMARY KEY (lot_id);
-- Orders (one per earned lot) and redemptions (one per spend) in time order.
CREATE UNLOGGED TABLE scale_build.lot_order AS
SELECT lot_id, row_number() OVER (ORDER BY lot_id) AS order_pk
FROM scale_build.lot WHERE kind = 'earn';
CREATE UNLOGGED TABLE scale_build.lot_redemption AS
SELECT lot_id, row_number() OVER (ORDER BY hold_at, lot_id) AS redemption_pk,
       gen_random_uuid() AS public_id
FROM scale_build.lot WHERE redeemed;
CREATE UNLOGGED TABLE scale_build.lot_refund AS
SELECT lot_id, row_number() OVER (ORDER BY rev_at, lot_id) AS refund_pk
FROM scale_build.lot WHERE rev_x > 0;

-- step: stage the transactions
-- One row per ledger transaction, two entries each (from: -amount, to: +amount, in that
-- order, as post() writes its legs). Ids follow effective time.
CREATE UNLOGGED TABLE scale_build.txn AS
SELECT row_number() OVER (ORDER BY e.effective_at, e.lot_id, e.step) AS id, e.*
FROM (
    SELECT l.lot_id, l.member_id, 0 AS step, l.kind, l.earned_at AS effective_at,
           CASE l.kind WHEN 'earn' THEN 'issued' ELSE 'adjusted' END AS src,
           CASE l.kind WHEN 'earn' THEN 'pending' ELSE 'available' END AS dst,
           l.points AS amount,
           CASE l.kind WHEN 'earn' THEN 'order:ord-' || l.lot_id ELSE 'adjustment' END AS reference,
           CASE l.kind WHEN 'earn' THEN l.points ELSE 0 END AS qualifying,
           CASE l.kind WHEN 'earn' THEN l.earned_at END AS qualifying_at
    FROM scale_build.lot l
    UNION ALL
    SELECT lot_id, member_id, 1, 'reverse', rev_at, 'pending', 'issued', rev_x,
           'refund:ref-' || lot_id, -rev_x, earned_at
    FROM scale_build.lot WHERE rev_x > 0
    UNION ALL
    SELECT lot_id, member_id, 2, 'mature', avail_at, 'pending', 'available', base_points,
           'lot:' || lot_id, 0, NULL
    FROM scale_build.lot WHERE matured
    UNION ALL
    SELECT l.lot_id, l.member_id, 3, 'hold', l.hold_at, 'available', 'held', l.spent,
           'redemption:' || r.public_id, 0, NULL
    FROM scale_build.lot l JOIN scale_build.lot_redemption r USING (lot_id)
    UNION ALL
    SELECT l.lot_id, l.member_id, 4, 'capture', l.hold_at + interval '30 seconds', 'held',
           'redeemed', l.spent, 'redemption:' || r.public_id, 0, NULL
    FROM scale_build.lot l JOIN scale_build.lot_redemption r USING (lot_id)
    UNION ALL
    SELECT lot_id, member_id, 5, 'expire', exp_at, 'available', 'expired', left_points,
           'lot:' || lot_id, 0, NULL
    FROM scale_build.lot WHERE expired
) AS e;
ALTER TABLE scale_build.txn ADD PRIMARY KEY (id);

-- step: ledger_transactions
INSERT INTO ledger_transactions (id, public_id, member_id, kind, effective_at, created_at,
                                 reference, reason, actor, corrects_id, details, qualifying,
                                 qualifying_at)
SELECT t.id, gen_random_uuid(), t.member_id, t.kind, t.effective_at, t.effective_at,
       t.reference,
       CASE t.kind WHEN 'adjust' THEN 'Goodwill gesture (scale data)' END,
       CASE t.kind WHEN 'adjust' THEN 'scale-admin' END,
       NULL,
       CASE t.kind WHEN 'earn' THEN json_build_object('breakdown', json_build_array(
           json_build_object('rule_id', p.rule_id, 'version', 1, 'name', 'Base earning',
                             'kind', 'spend', 'points', t.amount)))
       ELSE '{}'::json END,
       t.qualifying, t.qualifying_at
FROM scale_build.txn t CROSS JOIN scale_build.p p
ORDER BY t.id;

-- step: ledger_entries
INSERT INTO ledger_entries (id, transaction_id, member_id, account, amount)
SELECT 2 * t.id - 1 + v.leg, t.id, t.member_id,
       CASE v.leg WHEN 0 THEN t.src ELSE t.dst END,
       CASE v.leg WHEN 0 THEN -t.amount ELSE t.amount END
FROM scale_build.txn t CROSS JOIN (VALUES (0), (1)) AS v (leg)
ORDER BY t.id, v.leg;

-- step: point_lots
-- expiry_notified_at: the worker sent the 14-day notice until it stopped (w).
INSERT INTO point_lots (id, member_id, transaction_id, points, remaining, state, available_at,
                        expires_at, created_at, expiry_notified_at)
SELECT l.lot_id, l.member_id, t.id, l.points,
       CASE WHEN l.expired THEN 0 ELSE l.left_points END,
       CASE WHEN l.expired THEN 'expired'
            WHEN l.kind = 'earn' AND NOT l.matured THEN 'pending'
            ELSE 'available' END,
       l.avail_at, l.exp_at, l.earned_at,
       CASE WHEN l.exp_at - interval '14 days' <= p.w
                 AND l.avail_at <= l.exp_at - interval '14 days'
                 AND NOT (l.redeemed AND l.full_redeem AND l.hold_at < l.exp_at - interval '14 days')
            THEN l.exp_at - interval '14 days' END
FROM scale_build.lot l
JOIN scale_build.txn t ON t.lot_id = l.lot_id AND t.step = 0
CROSS JOIN scale_build.p p
ORDER BY l.lot_id;

-- step: orders, refunds, redemptions
-- An order of points * 100 + 37 minor units earned its points under the one spend rule
-- (1 point per 100). A refund of R reverses floor(points * R / total): R is the least amount
-- that reverses rev_x.
INSERT INTO orders (id, order_id, member_id, currency, subtotal, discount, total,
                    redeemed_points, redeemed_value, points_earned, breakdown, lines,
                    request_hash, redemption_id, lot_id, placed_at, available_at, created_at,
                    refunded_amount, points_reversed, points_restored)
SELECT o.order_pk, 'ord-' || l.lot_id, l.member_id, 'USD', l.points * 100 + 37, 0,
       l.points * 100 + 37, 0, 0, l.points,
       json_build_array(json_build_object('rule_id', p.rule_id, 'version', 1,
                                          'name', 'Base earning', 'kind', 'spend',
                                          'points', l.points)),
       json_build_array(json_build_object('sku', 'sku-' || (l.lot_id % 500), 'category',
                                          'apparel', 'quantity', 1, 'unit_price',
                                          l.points * 100 + 37, 'net_amount', l.points * 100 + 37,
                                          'refunded_quantity', 0)),
       encode(sha256(convert_to('ord-' || l.lot_id, 'UTF8')), 'hex'), NULL, l.lot_id,
       l.earned_at, l.avail_at, l.earned_at,
       (l.rev_x::bigint * (l.points * 100 + 37) + l.points - 1) / l.points, l.rev_x, 0
FROM scale_build.lot l JOIN scale_build.lot_order o USING (lot_id) CROSS JOIN scale_build.p p
ORDER BY o.order_pk;
INSERT INTO refunds (id, refund_id, order_pk, amount, lines, points_reversed, points_restored,
                     request_hash, created_at)
SELECT f.refund_pk, 'ref-' || l.lot_id, o.order_pk,
       (l.rev_x::bigint * (l.points * 100 + 37) + l.points - 1) / l.points, NULL, l.rev_x, 0,
       encode(sha256(convert_to('ref-' || l.lot_id, 'UTF8')), 'hex'), l.rev_at
FROM scale_build.lot l
JOIN scale_build.lot_refund f USING (lot_id)
JOIN scale_build.lot_order o USING (lot_id)
ORDER BY f.refund_pk;
INSERT INTO redemptions (id, public_id, member_id, points, value, currency, status, order_ref,
                         expires_at, created_at, captured_at, released_at, restored_points)
SELECT r.redemption_pk, r.public_id, l.member_id, l.spent,
       l.spent::bigint * p.point_value_amount / p.point_value_points, 'USD', 'captured', NULL,
       l.hold_at + interval '15 minutes', l.hold_at, l.hold_at + interval '30 seconds', NULL, 0
FROM scale_build.lot l JOIN scale_build.lot_redemption r USING (lot_id) CROSS JOIN scale_build.p p
ORDER BY r.redemption_pk;
INSERT INTO redemption_allocations (id, redemption_id, lot_id, points)
SELECT r.redemption_pk, r.redemption_pk, l.lot_id, l.spent
FROM scale_build.lot l JOIN scale_build.lot_redemption r USING (lot_id)
ORDER BY r.redemption_pk;

-- step: member_balances
-- The balance columns from the lots' final state (ledger verify then checks them against the
-- entries); next_due_at as ledger._next_due computes it (no holds open, no tier retention);
-- last_activity_at: the last credit or debit (_record_activity).
INSERT INTO member_balances (member_id, available, pending, held, next_due_at,
                             last_activity_at, updated_at)
SELECT m.id, coalesce(a.available, 0), coalesce(a.pending, 0), 0, a.next_due,
       a.last_activity, p.t0
FROM members m
CROSS JOIN scale_build.p p
LEFT JOIN (
    SELECT member_id,
           sum(left_points) FILTER (WHERE NOT expired AND NOT (kind = 'earn' AND NOT matured))
               AS available,
           sum(left_points) FILTER (WHERE kind = 'earn' AND NOT matured) AS pending,
           least(min(avail_at) FILTER (WHERE kind = 'earn' AND NOT matured),
                 min(exp_at) FILTER (WHERE NOT expired AND left_points > 0)) AS next_due,
           greatest(max(earned_at), max(hold_at)) AS last_activity
    FROM scale_build.lot
    GROUP BY member_id
) AS a ON a.member_id = m.id
ORDER BY m.id;
