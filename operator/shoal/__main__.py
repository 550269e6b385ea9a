from shoal.main import main

main()
