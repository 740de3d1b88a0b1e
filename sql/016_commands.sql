-- Telegram commands (the daemon's remote control): every message the bot received, from
-- whom, and what came of it; also the poller's own trouble (a failing or stalling Bot
-- API), once per streak. The bot token is never written here.
CREATE TABLE commands (
    received_at  TIMESTAMP NOT NULL,        -- UTC, when optdesk handled it
    sent_at      TIMESTAMP,                 -- UTC, the message's own date (Telegram's clock)
    update_id    BIGINT,                    -- Telegram's update id (NULL for the poller's own rows)
    chat_id      VARCHAR,                   -- the chat it came from
    sender       VARCHAR,                   -- @username, or the sender's name
    text         VARCHAR,                   -- the message as sent (secrets redacted, at most 500 characters)
    command      VARCHAR,                   -- status, positions, pnl, kill, flatten, help; getUpdates / sendMessage for the poller's rows
    args         VARCHAR,                   -- the arguments, space-separated ('' for none)
    status       VARCHAR NOT NULL,          -- done, refused, invalid, error, pending, expired
    result       VARCHAR NOT NULL,          -- the reply sent, or why nothing was done
    run_id       BIGINT                     -- the job run it started (flatten), when one did
);
