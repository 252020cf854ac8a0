#pragma once
// Pipe delivery internals (pipe.cpp) that the unit tests check.

#include <string>

namespace postern::core::delivery {

/** Exit status of a pipe program, as the pipe transport maps it. */
struct PipeExit {
  int code = 0;             // reply code: 250 delivered, 451 deferred, 5xx bounced
  std::string enhanced;     // RFC 3463
  std::string description;  // "exit 75 (EX_TEMPFAIL)"
};

/**
 * Maps a waitpid() status (sysexits.h, as Postfix's pipe(8) does): 0 delivered;
 * 75 EX_TEMPFAIL and 71 EX_OSERR deferred (4.3.0); death by a signal deferred
 * (4.3.0); every other exit code bounced with the sysexits enhanced code
 * (5.3.0 for codes outside sysexits).
 */
PipeExit map_pipe_exit(int wait_status);

}  // namespace postern::core::delivery
