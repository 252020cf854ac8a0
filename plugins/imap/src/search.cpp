// SEARCH evaluation (see search.hpp); being written.
#include "search.hpp"
