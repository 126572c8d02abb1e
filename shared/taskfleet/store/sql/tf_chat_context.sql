-- A chat task's context: the chat's earlier completed messages (before this task's own) and
-- the user's memories, the newest kept. One definition for both of its callers:
--   * the claim of a chat worker (taskfleet.store.Preload), in the claim's own statement,
--     keyed by the claimed row's user and chat, never by the message or the handler;
--   * chat_worker.history.load_context, as taskfleet_app under the user's row security.
CREATE OR REPLACE FUNCTION tf_chat_context(
    p_user_id text, p_chat_id text, p_task_id uuid, p_history_limit integer,
    p_memory_limit integer
) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
-- plpgsql, not sql: its plan is prepared once per session. A sql function called from a
-- target list is planned again at every call (a quarter of a millisecond here).
BEGIN
RETURN jsonb_build_object(
  'history',
  (SELECT coalesce(jsonb_agg(jsonb_build_object('role', h.role, 'content', h.content)
                             ORDER BY h.seq), '[]'::jsonb)
   FROM (SELECT m.role, m.content, m.seq FROM messages m
         WHERE p_chat_id IS NOT NULL AND m.chat_id = p_chat_id AND m.user_id = p_user_id
           AND m.role IN ('user', 'assistant') AND m.status = 'completed'
           AND m.task_id IS DISTINCT FROM p_task_id
           AND m.seq < coalesce((SELECT o.seq FROM messages o
                                 WHERE o.task_id = p_task_id AND o.role = 'user'),
                                9223372036854775807)
         ORDER BY m.seq DESC LIMIT p_history_limit) h),
  'memories',
  (SELECT coalesce(jsonb_agg(jsonb_build_array(f.id, f.fact) ORDER BY f.created_at, f.id),
                   '[]'::jsonb)
   FROM (SELECT fact, created_at, id FROM memories WHERE user_id = p_user_id
         ORDER BY created_at DESC, id DESC LIMIT p_memory_limit) f));
END;
$$;
