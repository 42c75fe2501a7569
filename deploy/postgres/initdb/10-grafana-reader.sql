-- Grafana's read-only role: SELECT on the api's projections and nothing else (no INSERT, UPDATE,
-- DELETE, TRUNCATE or CREATE), for the provisioned datasource of deploy/grafana/provisioning.
--
-- The postgres image runs this once, when it initialises an empty data volume (mounted into
-- /docker-entrypoint-initdb.d), as POSTGRES_USER: the role the api connects and migrates as. The
-- api's migrations create the tables afterwards, so SELECT on them comes from ALTER DEFAULT
-- PRIVILEGES (for tables that role creates from now on), plus a GRANT on the tables that exist.
-- Safe to run again (e.g. on a volume created before this script, or to change the password):
--   docker compose exec postgres psql -U nertz -d nertz -f /docker-entrypoint-initdb.d/10-grafana-reader.sql
-- The password comes from GRAFANA_DB_PASSWORD (.env); psql >= 15 for \getenv.
\getenv grafana_password GRAFANA_DB_PASSWORD
\if :{?grafana_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'expected GRAFANA_DB_PASSWORD in the environment, was unset'; END $$;
\endif
\if :{?reader}
\else
\set reader nertz_grafana
\endif

SELECT format('CREATE ROLE %I', :'reader') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'grafana_password';
ALTER ROLE :"reader" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"DBNAME" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
REVOKE CREATE ON SCHEMA public FROM :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
