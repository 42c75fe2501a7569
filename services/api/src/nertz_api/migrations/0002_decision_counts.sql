-- Per-symbol decision counts, defined once for /profit, /metrics/{symbol} and the demo summary.
--   approved    verdicts that approved
--   rejected    verdicts a policy rejected (rules, qwen) — not those skipped because of the lock
--   suppressed  intents that met the Hard Lock: skipped by the validator (policy 'skipped') or
--               suppressed by the executor (SignalSuppressed), each intent counted once
--   risk_denied approved verdicts refused by a risk rule (RiskDenied)
CREATE VIEW decision_counts AS
WITH v AS (
    SELECT symbol,
           count(*) FILTER (WHERE decision = 'approve') AS approved,
           count(*) FILTER (WHERE decision = 'reject' AND policy <> 'skipped') AS rejected
    FROM verdicts GROUP BY symbol
), locked AS (
    SELECT symbol, count(DISTINCT correlation_id) AS suppressed
    FROM (
        SELECT symbol, correlation_id FROM suppressed WHERE kind = 'signal_suppressed'
        UNION ALL
        SELECT symbol, correlation_id FROM verdicts WHERE policy = 'skipped'
    ) x GROUP BY symbol
), risk AS (
    SELECT symbol, count(*) AS risk_denied FROM suppressed WHERE kind = 'risk_denied' GROUP BY symbol
)
SELECT symbol,
       coalesce(v.approved, 0) AS approved,
       coalesce(v.rejected, 0) AS rejected,
       coalesce(locked.suppressed, 0) AS suppressed,
       coalesce(risk.risk_denied, 0) AS risk_denied
FROM v FULL JOIN locked USING (symbol) FULL JOIN risk USING (symbol);
