-- Kamailio accounting records, one row per distinct record line.
--
-- `kind` is 'acc' for a transaction record and 'cdr' for a dialog CDR. Extra fields
-- (acc_extra, cdr_extra) are kept in `extra`.
--
-- The unique key is (source, record_sha256), the SHA-256 of the line as the bridge
-- published it. Kamailio gives a record no id of its own, so the record is its own key:
-- a redelivered message stores nothing new, and neither does the same line published
-- again under another Nats-Msg-Id (a dead letter replay, or a bridge that lost its state
-- file). Kamailio's acc module writes a failed INVITE twice, byte for byte (once as a
-- missed call, once as a failed transaction); those two lines are one event and make
-- one row. A key of chosen fields, such as (callid, method, to_tag, time, sip_code),
-- would also merge distinct records that differ only in another field.
CREATE TABLE cdr_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The last token of the subject akira.cdr.<source>.
    source          text        NOT NULL,
    record_sha256   bytea       NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('acc', 'cdr')),
    method          text,
    callid          text        NOT NULL,
    from_tag        text,
    to_tag          text,
    sip_code        smallint,
    sip_reason      text,
    -- acc: `time`, when the transaction's final reply was sent (acc_time_mode 0).
    -- cdr: `start_time`, when the dialog's INVITE arrived.
    event_time      timestamptz NOT NULL,
    -- cdr only: `end_time` and `duration` (which includes the ringing time).
    end_time        timestamptz,
    duration        interval,
    extra           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    stream_sequence bigint,
    inserted_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cdr_events_record_key UNIQUE (source, record_sha256)
);

CREATE INDEX cdr_events_call ON cdr_events (source, callid);
CREATE INDEX cdr_events_event_time ON cdr_events (event_time);

-- One row per call: the call's INVITE and BYE transaction records paired by callid.
--
-- start_time:      the dialog CDR's start (INVITE arrival) when there is one, else the
--                  first INVITE record's time.
-- answer_time:     the time of the first 2xx INVITE record; NULL for an unanswered call.
-- end_time:        the first BYE of an answered call (NULL until it arrives), or the time
--                  of the final reply of an unanswered one.
-- duration:        end_time - answer_time; 0 for an unanswered call, NULL while an
--                  answered call has no BYE yet. acc times have one-second resolution.
-- final_sip_code:  the first 2xx of an answered call, else the last final reply.
-- Calls without an INVITE transaction record do not appear.
CREATE VIEW cdr_calls AS
WITH invites AS (
    SELECT source,
           callid,
           min(event_time) AS first_invite_time,
           max(event_time) AS last_invite_time,
           min(event_time) FILTER (WHERE sip_code BETWEEN 200 AND 299) AS answer_time
    FROM cdr_events
    WHERE kind = 'acc' AND method = 'INVITE'
    GROUP BY source, callid
),
final_invite AS (
    SELECT DISTINCT ON (source, callid)
           source, callid, from_tag, to_tag, sip_code, sip_reason, extra
    FROM cdr_events
    WHERE kind = 'acc' AND method = 'INVITE'
    ORDER BY source,
             callid,
             (sip_code BETWEEN 200 AND 299) DESC,
             CASE WHEN sip_code BETWEEN 200 AND 299 THEN event_time END ASC,
             event_time DESC,
             id DESC
),
byes AS (
    SELECT source, callid, min(event_time) AS bye_time
    FROM cdr_events
    WHERE kind = 'acc' AND method = 'BYE'
    GROUP BY source, callid
),
dialogs AS (
    SELECT DISTINCT ON (source, callid)
           source, callid, event_time AS dialog_start_time, duration AS dialog_duration
    FROM cdr_events
    WHERE kind = 'cdr'
    ORDER BY source, callid, event_time, id
)
SELECT i.source,
       i.callid,
       f.from_tag,
       f.to_tag,
       least(d.dialog_start_time, i.first_invite_time) AS start_time,
       i.answer_time,
       CASE WHEN i.answer_time IS NULL THEN i.last_invite_time ELSE b.bye_time END AS end_time,
       CASE WHEN i.answer_time IS NULL THEN interval '0' ELSE b.bye_time - i.answer_time END AS duration,
       f.sip_code AS final_sip_code,
       f.sip_reason AS final_sip_reason,
       d.dialog_duration,
       f.extra AS invite_extra
FROM invites i
JOIN final_invite f USING (source, callid)
LEFT JOIN byes b USING (source, callid)
LEFT JOIN dialogs d USING (source, callid);
