/* The release all three programs report (shoalctl version, the agent's
 * registration and status). */
#ifndef SHOAL_VERSION_H
#define SHOAL_VERSION_H

#define SHOAL_VERSION "0.1.0"

#endif
