# cmake -DIN=script.lua -DOUT=script_lua.c -P embed_lua.cmake: writes the
# file's bytes as a NUL-terminated C array, so no quoting of the Lua source
# can go wrong.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from tracker/state_redis.lua by embed_lua.cmake. */\n"
                  "const char tracker_state_redis_lua[] = {\n${bytes}0x00};\n")
