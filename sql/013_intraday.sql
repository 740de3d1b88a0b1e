-- 013: reserved for the intraday branch (intraday_bars). A placeholder on the futures
-- branch so the migrations stay numbered without a gap: at the merge, take the
-- intraday branch's file.
SELECT 1;
