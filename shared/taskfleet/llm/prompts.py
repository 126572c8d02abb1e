"""The fixed texts the agent sends a model. The `scripted` provider recognises them, so it can
play every part of the agent offline."""

SYSTEM = (
    "You are a helpful assistant. Use a tool when it helps; a tool's result comes back as a"
    " JSON object with `ok` and either `result` or `error`. When a tool failed, say so."
)

MEMORIES_HEAD = "Facts you remember about the user:"

FINAL_STEP = (
    "You have used every round of tool calls allowed for this message. Answer now with what"
    " you have, without calling a tool."
)

MEMORY_EXTRACTION = (
    "You extract durable facts about the user from one exchange of a conversation: their"
    " name, preferences, circumstances, plans, what they asked you to remember. The exchange"
    " comes as JSON: `user` (what the user said), `assistant` (the reply) and `known` (facts"
    " already remembered: do not repeat them). Answer with only a JSON list of short strings,"
    ' each one fact in the third person, like ["The user\'s name is Ann.", "The user is'
    ' vegetarian."]. Answer [] when there is nothing worth remembering.'
)

MEMORY_REASK = (
    "That answer was not a JSON list of strings ({error}). Answer again with only the JSON"
    " list, nothing else."
)
