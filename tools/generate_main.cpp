int main() { return 0; }  // placeholder until kvmesh-generate lands
