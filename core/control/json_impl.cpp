// Boost.JSON, header-only: its implementation is compiled once, here, for
// every user in postern_core (the control plane). No other translation unit
// may include <boost/json/src.hpp>.
#include <boost/json/src.hpp>
